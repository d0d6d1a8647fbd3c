//! Node allocatable (`pkg/kubelet/cm/node_container_manager_linux.go`): what the node's
//! capacity leaves for pods once `kubeReserved` and `systemReserved` are set aside, and the
//! limits that follow from it.
//!
//! As in the kubelet, `kubepods` always gets limits: with `enforceNodeAllocatable: [pods]` (the
//! default) memory = capacity − kubeReserved − systemReserved (the hard eviction threshold is
//! *not* subtracted for the cgroup; it only counts when the configuration is validated), CPU
//! shares from the allocatable CPU, PIDs from the node's task limit minus the reserved `pid`,
//! and huge pages; without `pods`, the same from capacity alone. The `system-reserved` and
//! `kube-reserved` levels put the reservation itself on the existing `systemReservedCgroup` /
//! `kubeReservedCgroup`; their `-compressible` forms put only the CPU shares there.
//! Everything here is pure; [`super::manager`] writes it.

use std::collections::BTreeMap;
use std::path::Path;

use super::{milli_cpu_to_shares, CgroupError, ResourceConfig};
use crate::resource::{parse_quantity, Quantity};

/// Amounts of the resources cgroups limit: a capacity, a reservation or what is allocatable.
/// `None` is "not part of it" (the kubelet's missing `ResourceList` key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_milli: Option<i64>,
    pub memory: Option<i64>,
    /// Process IDs (the kubelet's internal `pid` resource).
    pub pids: Option<i64>,
    /// Huge pages in bytes, by page size in bytes.
    pub hugepages: BTreeMap<u64, i64>,
}

impl NodeResources {
    /// The node's capacity as the kubelet takes it from cAdvisor's machine info
    /// (`CapacityFromMachineInfo`): every core, all memory, each huge page size's pool, plus the
    /// internal `pid` capacity ([`task_max`]).
    pub fn capacity(machine: &collectors::MachineInfo, task_max: Option<i64>) -> Self {
        NodeResources {
            cpu_milli: Some(machine.num_cores as i64 * 1000),
            memory: Some(machine.memory_capacity as i64),
            pids: task_max,
            hugepages: machine
                .hugepages
                .iter()
                .map(|h| {
                    let size = h.page_size.saturating_mul(1024);
                    (size, size.saturating_mul(h.num_pages) as i64)
                })
                .collect(),
        }
    }

    /// A reservation (`kubeReserved`, `systemReserved`) from its quantities: `cpu`, `memory`,
    /// `pid` and `hugepages-<size>`; other names (`ephemeral-storage`) have no cgroup.
    /// `setting` names the map in errors.
    pub fn reservation(
        setting: &str,
        quantities: &BTreeMap<String, Quantity>,
    ) -> Result<Self, CgroupError> {
        let mut r = NodeResources::default();
        for (name, q) in quantities {
            match name.as_str() {
                "cpu" => r.cpu_milli = Some(q.milli_value()),
                "memory" => r.memory = Some(q.value()),
                "pid" => r.pids = Some(q.value()),
                other => {
                    let Some(size) = other.strip_prefix("hugepages-") else {
                        continue;
                    };
                    let size = parse_quantity(size)
                        .ok()
                        .map(|s| s.value())
                        .filter(|s| *s > 0)
                        .ok_or_else(|| CgroupError::Allocatable {
                            message: format!(
                                "{setting}[{other}]: the page size {size:?} is not a positive quantity"
                            ),
                        })?;
                    r.hugepages.insert(size as u64, q.value());
                }
            }
        }
        Ok(r)
    }

    /// The amounts of the resources this holds, named as the kubelet names them.
    fn entries(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        if let Some(v) = self.cpu_milli {
            out.push(("cpu".to_string(), v));
        }
        if let Some(v) = self.memory {
            out.push(("memory".to_string(), v));
        }
        if let Some(v) = self.pids {
            out.push(("pid".to_string(), v));
        }
        for (size, v) in &self.hugepages {
            out.push((hugepage_resource_name(*size), *v));
        }
        out
    }
}

/// `hugepages-2Mi`, `hugepages-1Gi`: the resource name of a page size in bytes.
pub fn hugepage_resource_name(size: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "Ti"),
        (1 << 30, "Gi"),
        (1 << 20, "Mi"),
        (1 << 10, "Ki"),
    ];
    for (unit, suffix) in UNITS {
        if size >= unit && size.is_multiple_of(unit) {
            return format!("hugepages-{}{suffix}", size / unit);
        }
    }
    format!("hugepages-{size}")
}

/// The node's task limit: the smaller of `kernel.pid_max` and `kernel.threads-max` (the
/// kubelet's `pidlimit.Stats`), or `None` when neither can be read.
pub fn task_max(proc_root: &Path) -> Option<i64> {
    ["sys/kernel/pid_max", "sys/kernel/threads-max"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(proc_root.join(f)).ok())
        .filter_map(|s| s.trim().parse::<i64>().ok())
        .min()
}

/// Which `enforceNodeAllocatable` levels are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub pods: bool,
    pub system_reserved: bool,
    pub system_reserved_compressible: bool,
    pub kube_reserved: bool,
    pub kube_reserved_compressible: bool,
}

impl Enforcement {
    /// From the configuration's levels (already validated; `none` and unknown names enforce
    /// nothing).
    pub fn from_levels(levels: &[String]) -> Self {
        let has = |l: &str| levels.iter().any(|x| x == l);
        Enforcement {
            pods: has("pods"),
            system_reserved: has("system-reserved"),
            system_reserved_compressible: has("system-reserved-compressible"),
            kube_reserved: has("kube-reserved"),
            kube_reserved_compressible: has("kube-reserved-compressible"),
        }
    }
}

/// The node-allocatable part of the kubelet's `NodeConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub capacity: NodeResources,
    pub system_reserved: NodeResources,
    pub kube_reserved: NodeResources,
    /// The hard eviction thresholds as amounts (`memory.available` → memory): they count when
    /// the configuration is validated, never in a cgroup limit.
    pub hard_eviction: NodeResources,
    pub enforce: Enforcement,
    pub system_reserved_cgroup: Option<String>,
    pub kube_reserved_cgroup: Option<String>,
    /// The `MemoryQoS` feature gate (off by default; acts on cgroup v2 only).
    pub memory_qos: bool,
}

/// Limits for one reserved cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedCgroup {
    /// The enforcement level, for messages (`system-reserved`).
    pub level: &'static str,
    /// The cgroup (cgroupfs syntax, from the root of the hierarchy).
    pub name: String,
    pub config: ResourceConfig,
}

impl NodeConfig {
    /// capacity − systemReserved − kubeReserved, never below 0, for every resource of the
    /// capacity (`getNodeAllocatableAbsoluteImpl`).
    pub fn allocatable(&self) -> NodeResources {
        let sub = |cap: Option<i64>, a: Option<i64>, b: Option<i64>| {
            cap.map(|c| {
                c.saturating_sub(a.unwrap_or(0))
                    .saturating_sub(b.unwrap_or(0))
                    .max(0)
            })
        };
        let (s, k) = (&self.system_reserved, &self.kube_reserved);
        NodeResources {
            cpu_milli: sub(self.capacity.cpu_milli, s.cpu_milli, k.cpu_milli),
            memory: sub(self.capacity.memory, s.memory, k.memory),
            pids: sub(self.capacity.pids, s.pids, k.pids),
            hugepages: self
                .capacity
                .hugepages
                .iter()
                .map(|(size, cap)| {
                    let v = sub(
                        Some(*cap),
                        s.hugepages.get(size).copied(),
                        k.hugepages.get(size).copied(),
                    );
                    (*size, v.unwrap_or(0))
                })
                .collect(),
        }
    }

    /// What `kubepods` is limited to: allocatable when `pods` is enforced, capacity otherwise.
    pub fn kubepods_resources(&self) -> NodeResources {
        if self.enforce.pods {
            self.allocatable()
        } else {
            self.capacity.clone()
        }
    }

    /// The limits `kubepods` gets. Without the `MemoryQoS` gate, cgroup v2 `memory.min` and
    /// `memory.low` are reset to 0 so that a rollback of the gate takes effect, as the kubelet
    /// does (the writer ignores them on v1).
    pub fn kubepods_config(&self) -> ResourceConfig {
        let mut c = cgroup_config(&self.kubepods_resources(), false);
        if !self.memory_qos {
            c.memory_min = Some(0);
            c.memory_low = Some(0);
        }
        c
    }

    /// The reserved cgroups to enforce and their limits, in the kubelet's order.
    pub fn reserved_cgroups(&self) -> Vec<ReservedCgroup> {
        let levels = [
            (
                self.enforce.system_reserved,
                false,
                "system-reserved",
                &self.system_reserved_cgroup,
                &self.system_reserved,
            ),
            (
                self.enforce.kube_reserved,
                false,
                "kube-reserved",
                &self.kube_reserved_cgroup,
                &self.kube_reserved,
            ),
            (
                self.enforce.system_reserved_compressible,
                true,
                "system-reserved-compressible",
                &self.system_reserved_cgroup,
                &self.system_reserved,
            ),
            (
                self.enforce.kube_reserved_compressible,
                true,
                "kube-reserved-compressible",
                &self.kube_reserved_cgroup,
                &self.kube_reserved,
            ),
        ];
        levels
            .into_iter()
            .filter(|(on, ..)| *on)
            .filter_map(|(_, compressible, level, name, reserved)| {
                let name = name.as_ref()?;
                let mut config = cgroup_config(reserved, compressible);
                if self.memory_qos && !compressible {
                    config.memory_min = config.memory_limit;
                }
                Some(ReservedCgroup {
                    level,
                    name: format!("/{}", name.trim_matches('/')),
                    config,
                })
            })
            .collect()
    }

    /// Refuses a reservation (system + kube + hard eviction) larger than the capacity
    /// (`validateNodeAllocatable`), naming each such resource.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
        for r in [
            &self.system_reserved,
            &self.kube_reserved,
            &self.hard_eviction,
        ] {
            for (name, v) in r.entries() {
                *reserved.entry(name).or_insert(0) += v;
            }
        }
        let capacity: BTreeMap<String, i64> = self.capacity.entries().into_iter().collect();
        let errors: Vec<String> = reserved
            .iter()
            .filter(|(_, v)| **v != 0)
            .filter_map(|(name, v)| {
                let cap = *capacity.get(name)?;
                (cap < *v).then(|| {
                    format!(
                        "resource {name:?} has a reservation of {v} but a capacity of {cap}; \
                         expected capacity >= reservation"
                    )
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Allocatable {
                message: errors.join("; "),
            })
        }
    }
}

/// The cgroup settings of a resource list (`getCgroupConfig`): memory, CPU shares, PIDs and
/// huge pages, or only the CPU shares for a `-compressible` level. Huge pages are always set
/// for a full config, so sizes it does not name are limited to 0, as in the kubelet.
pub fn cgroup_config(r: &NodeResources, compressible_only: bool) -> ResourceConfig {
    let cpu_shares = r.cpu_milli.map(milli_cpu_to_shares);
    if compressible_only {
        return ResourceConfig {
            cpu_shares,
            ..Default::default()
        };
    }
    ResourceConfig {
        cpu_shares,
        memory_limit: r.memory,
        pids_limit: r.pids,
        hugepage_limits: Some(r.hugepages.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: i64 = 1 << 30;
    const MI: i64 = 1 << 20;

    fn q(s: &str) -> Quantity {
        parse_quantity(s).unwrap()
    }

    fn machine() -> collectors::MachineInfo {
        collectors::MachineInfo {
            num_cores: 4,
            memory_capacity: 16 * GI as u64,
            hugepages: vec![
                collectors::machine::HugePages {
                    page_size: 2048,
                    num_pages: 512,
                },
                collectors::machine::HugePages {
                    page_size: 1048576,
                    num_pages: 0,
                },
            ],
            ..Default::default()
        }
    }

    fn config(levels: &[&str]) -> NodeConfig {
        let sys = BTreeMap::from([
            ("cpu".to_string(), q("500m")),
            ("memory".to_string(), q("1Gi")),
            ("pid".to_string(), q("1000")),
            ("ephemeral-storage".to_string(), q("10Gi")),
        ]);
        let kube = BTreeMap::from([
            ("cpu".to_string(), q("250m")),
            ("memory".to_string(), q("512Mi")),
            ("hugepages-2Mi".to_string(), q("256Mi")),
        ]);
        NodeConfig {
            capacity: NodeResources::capacity(&machine(), Some(32768)),
            system_reserved: NodeResources::reservation("systemReserved", &sys).unwrap(),
            kube_reserved: NodeResources::reservation("kubeReserved", &kube).unwrap(),
            hard_eviction: NodeResources {
                memory: Some(100 * MI),
                ..Default::default()
            },
            enforce: Enforcement::from_levels(
                &levels.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ),
            system_reserved_cgroup: Some("system.slice".into()),
            kube_reserved_cgroup: Some("/kube.slice/".into()),
            memory_qos: false,
        }
    }

    #[test]
    fn capacity_comes_from_machine_info() {
        let c = NodeResources::capacity(&machine(), Some(32768));
        assert_eq!(c.cpu_milli, Some(4000));
        assert_eq!(c.memory, Some(16 * GI));
        assert_eq!(c.pids, Some(32768));
        assert_eq!(
            c.hugepages,
            BTreeMap::from([(2 * MI as u64, 1024 * MI), (GI as u64, 0)])
        );
        assert_eq!(hugepage_resource_name(2 * MI as u64), "hugepages-2Mi");
        assert_eq!(hugepage_resource_name(GI as u64), "hugepages-1Gi");
        assert_eq!(hugepage_resource_name(64 << 10), "hugepages-64Ki");
    }

    #[test]
    fn kubepods_gets_capacity_minus_reservations_but_not_the_eviction_threshold() {
        let c = config(&["pods"]);
        let k = c.kubepods_config();
        // 16Gi − 1Gi (system) − 512Mi (kube); the 100Mi hard eviction threshold stays.
        assert_eq!(k.memory_limit, Some(16 * GI - GI - 512 * MI));
        // 4000m − 500m − 250m = 3250m → 3328 shares.
        assert_eq!(k.cpu_shares, Some(3328));
        assert_eq!(k.pids_limit, Some(32768 - 1000));
        assert_eq!(
            k.hugepage_limits,
            Some(BTreeMap::from([(2 * MI as u64, 768 * MI), (GI as u64, 0)]))
        );
        assert_eq!((k.memory_min, k.memory_low), (Some(0), Some(0)));
        assert_eq!(k.cpu_quota, None);
    }

    #[test]
    fn without_pods_enforcement_kubepods_gets_capacity() {
        let c = config(&[]);
        let k = c.kubepods_config();
        assert_eq!(k.memory_limit, Some(16 * GI));
        assert_eq!(k.cpu_shares, Some(4096));
        assert_eq!(k.pids_limit, Some(32768));
        assert!(c.reserved_cgroups().is_empty());
    }

    #[test]
    fn reservations_never_go_below_zero() {
        let mut c = config(&["pods"]);
        c.kube_reserved.memory = Some(64 * GI);
        assert_eq!(c.allocatable().memory, Some(0));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("\"memory\""), "{err}");
        assert!(config(&["pods"]).validate().is_ok());
    }

    #[test]
    fn the_hard_eviction_threshold_counts_in_validation() {
        let mut c = config(&["pods"]);
        c.system_reserved.memory = Some(16 * GI - 512 * MI);
        // 15.5Gi + 512Mi = capacity: fine without eviction, too much with its 100Mi.
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("memory"), "{err}");
        c.hard_eviction.memory = None;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn reserved_levels_limit_their_cgroups() {
        let c = config(&["pods", "system-reserved", "kube-reserved-compressible"]);
        let r = c.reserved_cgroups();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].level, "system-reserved");
        assert_eq!(r[0].name, "/system.slice");
        assert_eq!(r[0].config.memory_limit, Some(GI));
        assert_eq!(r[0].config.cpu_shares, Some(512));
        assert_eq!(r[0].config.pids_limit, Some(1000));
        // Sizes the reservation does not name are limited to 0 (the kubelet's behaviour).
        assert_eq!(r[0].config.hugepage_limits, Some(BTreeMap::new()));
        assert_eq!(r[1].level, "kube-reserved-compressible");
        assert_eq!(r[1].name, "/kube.slice");
        assert_eq!(
            r[1].config,
            ResourceConfig {
                cpu_shares: Some(256),
                ..Default::default()
            }
        );
    }

    #[test]
    fn memory_qos_protects_reserved_memory() {
        let mut c = config(&["pods", "kube-reserved"]);
        c.memory_qos = true;
        let k = c.kubepods_config();
        assert_eq!((k.memory_min, k.memory_low), (None, None));
        assert_eq!(c.reserved_cgroups()[0].config.memory_min, Some(512 * MI));
    }

    #[test]
    fn a_bad_hugepage_name_is_named() {
        let m = BTreeMap::from([("hugepages-x".to_string(), q("1Gi"))]);
        let err = NodeResources::reservation("kubeReserved", &m)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubeReserved[hugepages-x]"), "{err}");
    }

    #[test]
    fn task_max_is_the_smaller_kernel_limit() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/kernel")).unwrap();
        assert_eq!(task_max(t.path()), None);
        std::fs::write(t.path().join("sys/kernel/pid_max"), "4194304\n").unwrap();
        assert_eq!(task_max(t.path()), Some(4194304));
        std::fs::write(t.path().join("sys/kernel/threads-max"), "192726\n").unwrap();
        assert_eq!(task_max(t.path()), Some(192726));
    }
}
