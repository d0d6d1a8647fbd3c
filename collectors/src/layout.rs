//! Which cgroup hierarchies a root holds: v1 (one mount per controller), v2 (one unified
//! mount) or hybrid (v1 controllers plus a cgroup2 mount at `<root>/unified`, as systemd sets
//! up and as this project's reference machine runs).
//!
//! Detection looks only at the directory tree under the configured root, so tests build
//! synthetic trees (see [`crate::testing::FixtureTree`]) and never touch `/sys/fs/cgroup`.

use std::path::{Path, PathBuf};

/// Errors of layout detection.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The root holds neither v1 controllers nor a cgroup2 hierarchy.
    #[error("no cgroup hierarchy found under {path}: expected {path}/cgroup.controllers (v2) or controller directories such as {path}/memory (v1)")]
    NoHierarchy {
        /// The configured cgroup root.
        path: PathBuf,
    },
}

/// The cgroup v1 controllers the collectors read, each the directory of its hierarchy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V1Controllers {
    /// `cpu` (CFS figures and limits).
    pub cpu: Option<PathBuf>,
    /// `cpuacct` (usage).
    pub cpuacct: Option<PathBuf>,
    /// `memory`.
    pub memory: Option<PathBuf>,
    /// `pids`.
    pub pids: Option<PathBuf>,
    /// `blkio`.
    pub blkio: Option<PathBuf>,
    /// `cpuset` (spec only).
    pub cpuset: Option<PathBuf>,
}

impl V1Controllers {
    /// The distinct hierarchy directories, in a stable order (co-mounted controllers such as
    /// `cpu,cpuacct` appear once).
    pub fn hierarchies(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for p in [
            &self.memory,
            &self.cpu,
            &self.cpuacct,
            &self.pids,
            &self.blkio,
            &self.cpuset,
        ]
        .into_iter()
        .flatten()
        {
            let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if !seen.contains(&canon) {
                seen.push(canon);
                out.push(p.clone());
            }
        }
        out
    }
}

/// The cgroup layout found under a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Pure cgroup v1.
    V1(V1Controllers),
    /// Pure cgroup v2: the unified hierarchy's directory.
    V2(PathBuf),
    /// v1 controllers for resources plus a cgroup2 hierarchy (PSI comes from it).
    Hybrid(V1Controllers, PathBuf),
}

impl CgroupLayout {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Result<CgroupLayout, LayoutError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(CgroupLayout::V2(root.to_path_buf()));
        }
        let dir = |name: &str| {
            let p = root.join(name);
            p.is_dir().then_some(p)
        };
        let v1 = V1Controllers {
            cpu: dir("cpu"),
            cpuacct: dir("cpuacct"),
            memory: dir("memory"),
            pids: dir("pids"),
            blkio: dir("blkio"),
            cpuset: dir("cpuset"),
        };
        let unified = root.join("unified");
        let has_unified = unified.join("cgroup.controllers").is_file();
        if v1 == V1Controllers::default() {
            return if has_unified {
                Ok(CgroupLayout::V2(unified))
            } else {
                Err(LayoutError::NoHierarchy {
                    path: root.to_path_buf(),
                })
            };
        }
        Ok(if has_unified {
            CgroupLayout::Hybrid(v1, unified)
        } else {
            CgroupLayout::V1(v1)
        })
    }

    /// The v1 controllers, if any.
    pub fn v1(&self) -> Option<&V1Controllers> {
        match self {
            CgroupLayout::V1(c) | CgroupLayout::Hybrid(c, _) => Some(c),
            CgroupLayout::V2(_) => None,
        }
    }

    /// The cgroup2 hierarchy, if any.
    pub fn unified(&self) -> Option<&Path> {
        match self {
            CgroupLayout::V2(u) | CgroupLayout::Hybrid(_, u) => Some(u),
            CgroupLayout::V1(_) => None,
        }
    }

    /// The hierarchies in which containers are discovered: the v1 resource hierarchies, or
    /// the unified one on pure v2. (On hybrid the unified tree only adds PSI.)
    pub fn discovery_roots(&self) -> Vec<PathBuf> {
        match self {
            CgroupLayout::V1(c) | CgroupLayout::Hybrid(c, _) => c.hierarchies(),
            CgroupLayout::V2(u) => vec![u.clone()],
        }
    }

    /// Short name for logs and version info: `v1`, `v2` or `hybrid`.
    pub fn kind(&self) -> &'static str {
        match self {
            CgroupLayout::V1(_) => "v1",
            CgroupLayout::V2(_) => "v2",
            CgroupLayout::Hybrid(..) => "hybrid",
        }
    }
}

/// Joins a container name (`/a/b`, `/` for the root) onto a hierarchy directory.
pub fn cgroup_dir(hierarchy: &Path, name: &str) -> PathBuf {
    let rel = name.trim_start_matches('/');
    if rel.is_empty() {
        hierarchy.to_path_buf()
    } else {
        hierarchy.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FixtureTree, Layout};

    #[test]
    fn detects_v1() {
        let t = FixtureTree::new(Layout::V1);
        let l = CgroupLayout::detect(t.root()).unwrap();
        assert_eq!(l.kind(), "v1");
        assert!(l.unified().is_none());
        assert_eq!(l.discovery_roots().len(), 6);
    }

    #[test]
    fn detects_v2() {
        let t = FixtureTree::new(Layout::V2);
        let l = CgroupLayout::detect(t.root()).unwrap();
        assert_eq!(l, CgroupLayout::V2(t.root().to_path_buf()));
        assert_eq!(l.discovery_roots(), vec![t.root().to_path_buf()]);
    }

    #[test]
    fn detects_hybrid() {
        let t = FixtureTree::new(Layout::Hybrid);
        let l = CgroupLayout::detect(t.root()).unwrap();
        assert_eq!(l.kind(), "hybrid");
        assert_eq!(l.unified(), Some(t.root().join("unified").as_path()));
        assert!(l.v1().unwrap().memory.is_some());
    }

    #[test]
    fn co_mounted_controllers_are_one_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cpu,cpuacct")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpuacct")).unwrap();
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        let l = CgroupLayout::detect(dir.path()).unwrap();
        assert_eq!(l.discovery_roots().len(), 2);
    }

    #[test]
    fn empty_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = CgroupLayout::detect(dir.path()).unwrap_err();
        assert!(e.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn this_machine_if_cgroups_are_mounted() {
        let root = Path::new("/sys/fs/cgroup");
        match CgroupLayout::detect(root) {
            Ok(l) => assert!(!l.discovery_roots().is_empty()),
            Err(e) => println!("skipped: {e}"),
        }
    }

    #[test]
    fn names_join_onto_hierarchies() {
        let h = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(cgroup_dir(h, "/"), h);
        assert_eq!(cgroup_dir(h, "/a/b"), h.join("a/b"));
    }
}
