//! Container CPU and memory tiers from the stats task's samples.

use super::*;

impl Tracker {
    /// A round of the stats task: each sample updates the CPU and memory tiers of a tracked
    /// container (containers the tracker does not watch are skipped).
    pub(super) fn on_stats(&mut self, batch: &StatsBatch, out: &mut Vec<Signal>) {
        for (id, sample) in &batch.samples {
            if let Some(mem) = self.containers.get_mut(id) {
                apply_stats(mem, &self.settings, sample, batch.at, out);
            }
        }
    }
}

/// A container that is not running has no CPU or memory to judge: its trend starts over.
pub(super) fn forget_stats(mem: &mut ContainerMemory) {
    mem.prev_stats = None;
    mem.memory_samples.clear();
}

fn apply_stats(
    mem: &mut ContainerMemory,
    settings: &EvalSettings,
    sample: &StatsSample,
    at: Timestamp,
    out: &mut Vec<Signal>,
) {
    if mem.memory_limit > 0 {
        if mem.memory_samples.len() >= MEMORY_SAMPLES_KEPT {
            mem.memory_samples.pop_front();
        }
        mem.memory_samples.push_back((at, sample.working_set()));
    }
    let cpu_threshold =
        label_percent(&mem.labels, LABEL_CPU_THRESHOLD).unwrap_or(settings.cpu_percent);
    if let Some(prev) = mem.prev_stats
        && let Some(cpu) = sample.cpu_percent_since(&prev)
    {
        let sig = match tier(cpu, cpu_threshold) {
            Some(sev) => {
                let detail = format!("CPU {} (threshold {})", pct(cpu), pct(cpu_threshold));
                mem.signal(SignalKind::ContainerCpuHigh, true, sev, detail, at)
            }
            None => mem.inactive(SignalKind::ContainerCpuHigh, at),
        };
        out.push(sig);
    }
    mem.prev_stats = Some(*sample);
    let mem_threshold =
        label_percent(&mem.labels, LABEL_MEMORY_THRESHOLD).unwrap_or(settings.memory_percent);
    // Against the container's own limit only: an unlimited container's "limit" in stats is the
    // host's memory, which host_memory_high already watches.
    let used = (mem.memory_limit > 0)
        .then(|| sample.memory_percent())
        .flatten();
    let sig = match used.and_then(|u| tier(u, mem_threshold).map(|s| (u, s))) {
        Some((used, sev)) => {
            let detail = format!(
                "memory {} of {} limit, {} (threshold {})",
                pct(used),
                human_bytes(sample.memory_limit),
                human_bytes(sample.working_set()),
                pct(mem_threshold)
            );
            mem.signal(SignalKind::ContainerMemoryHigh, true, sev, detail, at)
        }
        None => mem.inactive(SignalKind::ContainerMemoryHigh, at),
    };
    out.push(sig);
}
