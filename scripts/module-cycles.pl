#!/usr/bin/env perl
# Module cycles of one crate, file by file:
#   perl scripts/module-cycles.pl watchdog/src
# Reads every `.rs` file under the crate's source folder (its tests left out: `tests.rs`,
# `tests/` folders and `#[cfg(test)] mod ... { }` blocks), resolves every `crate::`, `super::`
# and `self::` path it names (in `use` trees and inline) to the file that defines that module,
# and prints every circle of files that import each other, with the arrows that tie it. With
# `--depth=1` the files of a folder count as one module (`notify/`), so only circles between
# the crate's top-level modules count.
# Declaring a child module (`mod x;`) is not an arrow; importing from it is. Exits 1 when
# there is a circle, 0 when the files form layers. Needs only perl.
use strict;
use warnings;
use File::Find;

my $depth = 0;    # 0: file by file; N: files folded into their module N levels deep
if (@ARGV && $ARGV[0] =~ /^--depth=(\d+)$/) { $depth = $1; shift }
my $root = shift // die "usage: $0 [--depth=N] <crate>/src\n";
$root =~ s{/+$}{};
my %module_file;    # "a::b" => "a/b.rs"
my @files;
find(
    {
        no_chdir => 1,
        wanted   => sub {
            return unless /\.rs$/;
            my $rel = substr($File::Find::name, length($root) + 1);
            return if $rel =~ m{(^|/)tests(\.rs|/)} || $rel eq 'main.rs' || $rel =~ m{^bin/};
            push @files, $rel;
            my $m = $rel;
            $m =~ s{\.rs$}{};
            $m =~ s{(^|/)(mod|lib)$}{};
            $m =~ s{/}{::}g;
            $module_file{$m} = $rel;
        },
    },
    $root
);

sub module_of { my $f = shift; my ($m) = grep { $module_file{$_} eq $f } keys %module_file; $m }

# The file a path resolves to: the longest prefix of its segments that is a module. An item a
# module re-exports (`pub use child::Item;`) counts as that module's: importing through a
# `mod.rs` ties the importer to the `mod.rs`, and so to everything it imports.
sub resolve {
    my ($segments) = @_;
    for (my $n = @$segments; $n >= 0; $n--) {
        my $m = join('::', @$segments[0 .. $n - 1]);
        return $module_file{$m} if exists $module_file{$m};
    }
    return undef;
}

# Expand a use tree ("a::{b, c::{d, e}}") into its full paths.
sub expand {
    my ($tree) = @_;
    $tree =~ s/\s+as\s+/@/g;
    $tree =~ s/\s+//g;
    my @out;
    if ($tree =~ /^(.*?)\{(.*)\}$/s) {
        my ($prefix, $inner) = ($1, $2);
        my ($depth, $cur, @parts) = (0, '');
        for my $ch (split //, $inner) {
            if ($ch eq ',' && $depth == 0) { push @parts, $cur; $cur = ''; next }
            $depth++ if $ch eq '{';
            $depth-- if $ch eq '}';
            $cur .= $ch;
        }
        push @parts, $cur;
        for my $p (grep { length } @parts) {
            push @out, map { $prefix . $_ } expand($p);
        }
    } else {
        push @out, $tree;
    }
    return @out;
}

# Absolute module path of a path as written in `$file`, or () when it is not in this crate.
sub absolute {
    my ($path, $self, $children) = @_;
    my @seg = split /::/, $path;
    my @self = length $self ? split /::/, $self : ();
    return @seg[1 .. $#seg] if $seg[0] eq 'crate';
    return (@self, @seg[1 .. $#seg]) if $seg[0] eq 'self';
    if ($seg[0] eq 'super') {
        while (@seg && $seg[0] eq 'super') { pop @self; shift @seg }
        return (@self, @seg);
    }
    return (@self, @seg) if $children->{ $seg[0] };
    return ();
}

my (%edges, %names, %paths_of, %self_of, %children_of);
for my $file (@files) {
    open my $fh, '<', "$root/$file" or die "$root/$file: $!";
    my $src = do { local $/; <$fh> };
    close $fh;
    # Comments out, string and char literals emptied, in one left-to-right pass (a `"` in a char
    # literal or a `//` in a string must not fool the rest). Lifetimes (`'a`) stay as they are.
    $src =~ s{
        (//[^\n]*) | (/\*.*?\*/) | (\br(\#*)".*?"\4) | ("(?:[^"\\]|\\.)*")
        | ('(?:[^'\\\n]|\\[^']{1,9})')
    }{ defined $1 || defined $2 ? '' : defined $6 ? "' '" : '""' }gsex;
    # Drop `#[cfg(test)] mod name { ... }` blocks.
    while ($src =~ /#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{/g) {
        my ($start, $pos, $depth) = ($-[0], $+[0], 1);
        while ($depth > 0 && $pos < length $src) {
            my $ch = substr($src, $pos++, 1);
            $depth++ if $ch eq '{';
            $depth-- if $ch eq '}';
        }
        substr($src, $start, $pos - $start) = '';
        pos($src) = $start;
    }
    my $self = module_of($file);
    my %children = map { $_ => 1 } ($src =~ /\bmod\s+(\w+)\s*;/g);
    my @paths;
    while ($src =~ /\buse\s+([^;]+);/g) { push @paths, expand($1) }
    $src =~ s/\buse\s+[^;]+;//g;
    while ($src =~ /\b((?:crate|super|self)(?:::\w+)+)/g) { push @paths, $1 }
    ($paths_of{$file}, $self_of{$file}, $children_of{$file}) = (\@paths, $self, \%children);
}
for my $file (@files) {
    for my $path (@{ $paths_of{$file} }) {
        $path =~ s/@\w+$//;
        my @abs = absolute($path, $self_of{$file}, $children_of{$file}) or next;
        my $target = resolve(\@abs) // next;
        my ($from, $to) = (fold($file), fold($target));
        next if $from eq $to;
        $edges{$from}{$to} = 1;
        $names{"$from $to"}{ $abs[-1] } = 1;
    }
}

# With --depth=N, a file stands for its module N levels deep (`notify/queue.rs` is `notify` at
# depth 1): the arrows inside one such module are not counted.
sub fold {
    my ($file) = @_;
    return $file unless $depth;
    my @seg = split m{/}, $file;
    return $file if @seg <= $depth;
    return join('/', @seg[0 .. $depth - 1]) . '/';
}

# Tarjan's strongly connected components.
my ($index, @stack, %on, %idx, %low, @sccs) = (0);
sub strong {
    my ($v) = @_;
    $idx{$v} = $low{$v} = $index++;
    push @stack, $v;
    $on{$v} = 1;
    for my $w (sort keys %{ $edges{$v} || {} }) {
        if (!exists $idx{$w}) { strong($w); $low{$v} = $low{$w} if $low{$w} < $low{$v} }
        elsif ($on{$w}) { $low{$v} = $idx{$w} if $idx{$w} < $low{$v} }
    }
    if ($low{$v} == $idx{$v}) {
        my @c;
        while (1) { my $w = pop @stack; $on{$w} = 0; push @c, $w; last if $w eq $v }
        push @sccs, [sort @c] if @c > 1;
    }
}
my %nodes = map { fold($_) => 1 } @files;
strong($_) for grep { !exists $idx{$_} } sort keys %nodes;

for my $c (@sccs) {
    my %in = map { $_ => 1 } @$c;
    print "module cycle in $root: ", scalar(@$c), " parts: @$c\n";
    for my $a (@$c) {
        for my $b (sort grep { $in{$_} } keys %{ $edges{$a} || {} }) {
            print "  $a -> $b: ", join(', ', sort keys %{ $names{"$a $b"} }), "\n";
        }
    }
}
exit(@sccs ? 1 : 0);
