//! One domain's observation: size, state, counters, memory in use.

use super::hv;
use crate::{DriverError, UsageCounters, VmObservation};
use keel_model::Resources;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use virt::sys;

/// Reads one active domain; `None` if it stopped or left meanwhile.
pub(super) fn observe_domain(
    host: &str,
    dom: &Domain,
) -> Result<Option<VmObservation>, DriverError> {
    let name = match dom.name() {
        Ok(n) => n,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(hv(format!("reading a VM's name on host {host}"), e)),
    };
    let ctx = |what: &str| format!("reading {what} of VM {name} on host {host}");
    let info = match dom.info() {
        Ok(i) => i,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(hv(ctx("state"), e)),
    };
    if info.state.is(DomainState::Shutoff) {
        return Ok(None);
    }
    let max_mem = info.max_mem as f64 * 1024.0;
    let xml = match dom.xml_desc(0) {
        Ok(x) => x,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(hv(ctx("configuration"), e)),
    };
    // Device counters: a device hot-unplugged between the XML and the
    // reading is left out of this sample rather than failing the whole
    // observation.
    let mut disk_bytes = 0.0;
    for dev in target_devs(&xml, "disk") {
        if let Ok(s) = dom.block_stats(&dev) {
            disk_bytes += s.rd_bytes.max(0) as f64 + s.wr_bytes.max(0) as f64;
        }
    }
    let mut network_bytes = 0.0;
    for dev in target_devs(&xml, "interface") {
        if let Ok(s) = dom.interface_stats(&dev) {
            network_bytes += s.rx_bytes.max(0) as f64 + s.tx_bytes.max(0) as f64;
        }
    }
    let memory_used_bytes = match dom.memory_stats(0) {
        Ok(stats) => memory_used(stats.iter().map(|s| (s.tag, s.val)), max_mem),
        Err(_) => None,
    };
    Ok(Some(VmObservation {
        name: name.clone(),
        host: host.to_string(),
        size: Resources::new(f64::from(info.nr_virt_cpu), max_mem, 0.0, 0.0),
        running: info.state.is(DomainState::Running),
        counters: UsageCounters {
            cpu_seconds: info.cpu_time as f64 / 1e9,
            // Run-queue wait is not read per domain here (libvirt's
            // vcpu.N.wait comes with the bulk stats call): 0.
            cpu_wait_seconds: 0.0,
            disk_bytes,
            network_bytes,
        },
        memory_used_bytes,
        // Not measured by this body: the control loop's defaults apply
        // (docs/architecture.md, "What each driver reports").
        memory_dirty_bytes_per_second: None,
        local_disk_bytes: None,
    }))
}

/// Whether an error says the domain no longer exists or runs.
fn gone(e: &virt::error::Error) -> bool {
    matches!(
        e.code().known(),
        Some(ErrorNumber::NoDomain) | Some(ErrorNumber::OperationInvalid)
    )
}

/// Memory in use from balloon statistics (tag, KiB): `available - unused`
/// if the guest reports both, else RSS capped at the configured memory.
pub(super) fn memory_used(stats: impl Iterator<Item = (u32, u64)>, max_bytes: f64) -> Option<f64> {
    let (mut available, mut unused, mut rss) = (None, None, None);
    for (tag, kib) in stats {
        let bytes = kib as f64 * 1024.0;
        match tag {
            sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE => available = Some(bytes),
            sys::VIR_DOMAIN_MEMORY_STAT_UNUSED => unused = Some(bytes),
            sys::VIR_DOMAIN_MEMORY_STAT_RSS => rss = Some(bytes),
            _ => {}
        }
    }
    match (available, unused, rss) {
        (Some(a), Some(u), _) if a > 0.0 => Some((a - u).max(0.0)),
        (_, _, Some(r)) => Some(r.min(max_bytes)),
        _ => None,
    }
}

/// The `<target dev='...'>` of every `<KIND ...>` element in a domain XML.
pub(super) fn target_devs(xml: &str, kind: &str) -> Vec<String> {
    let open = format!("<{kind} ");
    let close = format!("</{kind}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start..];
        let end = body.find(&close).map_or(body.len(), |e| e + close.len());
        let element = &body[..end];
        if let Some(t) = element.find("<target ") {
            let tag = &element[t..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            if let Some(dev) = attribute(tag, "dev") {
                out.push(dev);
            }
        }
        rest = &body[end..];
    }
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(i) = tag.find(&key) {
            let value = &tag[i + key.len()..];
            return value.find(quote).map(|j| value[..j].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_from_xml() {
        let xml = "<domain><devices>\
            <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>\
            <disk type=\"file\"><target bus=\"sata\" dev=\"sdb\"/></disk>\
            <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='tap0'/></interface>\
            <interface type='user'><model type='virtio'/></interface>\
            </devices></domain>";
        assert_eq!(target_devs(xml, "disk"), vec!["vda", "sdb"]);
        assert_eq!(target_devs(xml, "interface"), vec!["tap0"]);
    }

    #[test]
    fn memory_from_balloon_or_rss() {
        let a = sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE;
        let u = sys::VIR_DOMAIN_MEMORY_STAT_UNUSED;
        let r = sys::VIR_DOMAIN_MEMORY_STAT_RSS;
        let max = 128.0 * 1048576.0;
        let guest = memory_used([(a, 94928), (u, 68496), (r, 212384)].into_iter(), max);
        assert_eq!(guest, Some((94928.0 - 68496.0) * 1024.0));
        assert_eq!(memory_used([(r, 212384)].into_iter(), max), Some(max));
        assert_eq!(memory_used([(r, 1024)].into_iter(), max), Some(1048576.0));
        assert_eq!(memory_used(std::iter::empty(), max), None);
    }
}
