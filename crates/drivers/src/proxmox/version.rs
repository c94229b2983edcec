//! Which Proxmox VE the cluster runs (`GET /version`, any user: pve-manager
//! `PVE/API2.pm`, `release` as `x.y`) and what differs between 8.x and 9.x.

use serde::Deserialize;

/// The answer of `GET /version` Keel reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VersionAnswer {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
}

/// A Proxmox VE release, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PveVersion {
    pub major: u32,
    pub minor: u32,
}

impl PveVersion {
    /// The release of an answer (`release`, else the leading `x.y` of
    /// `version`); `None` when neither reads as one.
    pub(crate) fn of(answer: &VersionAnswer) -> Option<Self> {
        [answer.release.as_deref(), answer.version.as_deref()]
            .into_iter()
            .flatten()
            .find_map(parse)
    }

    /// HA rules (`/cluster/ha/rules`, per-resource `failback`) exist from
    /// pve-ha-manager 5.0 (PVE 9.0); 8.x has HA groups
    /// (pve-ha-manager `src/PVE/API2/HA/Rules.pm`, `src/PVE/HA/Groups.pm`).
    pub(crate) fn has_ha_rules(self) -> bool {
        self.major >= 9
    }

    /// `GET /nodes/{node}/lxc/{vmid}/migrate` (the container precondition
    /// check) exists from pve-container 6 (PVE 9.0), `src/PVE/API2/LXC.pm`.
    pub(crate) fn has_container_precondition(self) -> bool {
        self.major >= 9
    }

    /// Nodes carry `hastate` in `/cluster/resources` from PVE 8.3
    /// (pve-manager `PVE/API2/Cluster.pm`): the HA status read is then
    /// not needed to find nodes in HA maintenance.
    pub(crate) fn has_node_hastate(self) -> bool {
        (self.major, self.minor) >= (8, 3)
    }
}

impl std::fmt::Display for PveVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

fn parse(text: &str) -> Option<PveVersion> {
    let mut parts = text.trim().split(['.', '-', '~']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(PveVersion { major, minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(version: Option<&str>, release: Option<&str>) -> VersionAnswer {
        VersionAnswer {
            version: version.map(str::to_string),
            release: release.map(str::to_string),
        }
    }

    #[test]
    fn releases_read_from_either_field() {
        let v = PveVersion::of(&answer(Some("9.1.2"), Some("9.1"))).unwrap();
        assert_eq!((v.major, v.minor), (9, 1));
        assert!(v.has_ha_rules() && v.has_container_precondition());
        let v = PveVersion::of(&answer(Some("8.4.1"), None)).unwrap();
        assert_eq!(v.to_string(), "8.4");
        assert!(!v.has_ha_rules() && v.has_node_hastate());
        let old = PveVersion::of(&answer(None, Some("8.2"))).unwrap();
        assert!(!old.has_node_hastate());
        assert_eq!(PveVersion::of(&answer(Some("x"), Some(""))), None);
    }
}
