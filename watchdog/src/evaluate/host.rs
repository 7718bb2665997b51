//! Host memory and disk tiers.

use super::*;

impl Tracker {
    // ---- Host, dependencies, app ---------------------------------------------------------

    pub(super) fn on_host(&mut self, h: &HostSample, out: &mut Vec<Signal>) {
        if h.mem_total_bytes > 0 {
            let avail = h.mem_available_bytes.min(h.mem_total_bytes);
            let used = (1.0 - avail as f64 / h.mem_total_bytes as f64) * 100.0;
            let threshold = self.settings.host_memory_percent;
            let subject = Subject::named("host");
            let sig = match tier(used, threshold) {
                Some(sev) => Signal::new(
                    SignalKind::HostMemoryHigh,
                    true,
                    sev,
                    subject,
                    format!(
                        "host memory {} used ({} of {} available, threshold {})",
                        pct(used),
                        human_bytes(avail),
                        human_bytes(h.mem_total_bytes),
                        pct(threshold)
                    ),
                    h.at,
                ),
                None => Signal::new(
                    SignalKind::HostMemoryHigh,
                    false,
                    Severity::Info,
                    subject,
                    "",
                    h.at,
                ),
            };
            out.push(sig);
        }
        for d in &h.disks {
            if d.total_bytes == 0 {
                continue;
            }
            let avail = d.available_bytes.min(d.total_bytes);
            let used = (1.0 - avail as f64 / d.total_bytes as f64) * 100.0;
            let threshold = self.settings.disk_percent;
            let subject = Subject::named(d.path.clone());
            let sig = match tier(used, threshold) {
                Some(sev) => Signal::new(
                    SignalKind::DiskHigh,
                    true,
                    sev,
                    subject,
                    format!(
                        "disk {} {} used ({} free of {}, threshold {})",
                        d.path,
                        pct(used),
                        human_bytes(avail),
                        human_bytes(d.total_bytes),
                        pct(threshold)
                    ),
                    h.at,
                ),
                None => Signal::new(
                    SignalKind::DiskHigh,
                    false,
                    Severity::Info,
                    subject,
                    "",
                    h.at,
                ),
            };
            out.push(sig);
        }
    }
}
