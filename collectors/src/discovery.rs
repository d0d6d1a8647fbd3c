//! Finding containers: every cgroup directory under the discovery hierarchies, by a full walk
//! (at start and every rescan interval) plus inotify on each directory for creations and
//! removals in between.
//!
//! A container is named by its cgroup path relative to the hierarchy root (`/` for the root,
//! `/kubepods/burstable/pod<uid>/<id>`), the same name in every v1 hierarchy, as cAdvisor names
//! raw containers. A directory that vanishes while it is being walked is skipped silently.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::layout::{cgroup_dir, CgroupLayout};
use crate::sys;

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A hierarchy root could not be listed.
    #[error("failed to list cgroup directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// inotify could not be set up.
    #[error("failed to initialise inotify for {path}: {source}")]
    Inotify {
        /// The hierarchy being watched.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Which cgroups are tracked: all of them, or those under given prefixes (plus the root `/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameFilter {
    prefixes: Vec<String>,
}

impl NameFilter {
    /// Tracks every cgroup.
    pub fn all() -> Self {
        NameFilter::default()
    }

    /// Tracks `/` and the cgroups at or below each prefix (`/kubepods`, `/system.slice`).
    pub fn prefixes<I: IntoIterator<Item = S>, S: Into<String>>(prefixes: I) -> Self {
        NameFilter {
            prefixes: prefixes
                .into_iter()
                .map(|p| {
                    let p: String = p.into();
                    let t = p.trim_end_matches('/');
                    if t.starts_with('/') {
                        t.to_string()
                    } else {
                        format!("/{t}")
                    }
                })
                .filter(|p| p != "/")
                .collect(),
        }
    }

    /// Whether `name` is a tracked container.
    pub fn tracks(&self, name: &str) -> bool {
        name == "/" || self.prefixes.is_empty() || self.prefixes.iter().any(|p| under(name, p))
    }

    /// Whether the walk must descend into `name` (tracked, or on the way to a prefix).
    pub fn descends(&self, name: &str) -> bool {
        self.tracks(name) || self.prefixes.iter().any(|p| under(p, name))
    }
}

/// `name` is `prefix` or below it.
fn under(name: &str, prefix: &str) -> bool {
    prefix == "/"
        || name == prefix
        || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
}

fn child_name(parent: &str, leaf: &str) -> String {
    if parent == "/" {
        format!("/{leaf}")
    } else {
        format!("{parent}/{leaf}")
    }
}

/// A change seen by inotify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A tracked cgroup appeared.
    Added(String),
    /// A tracked cgroup is gone from every hierarchy.
    Removed(String),
}

/// Discovers containers in the hierarchies of a layout.
pub struct Discovery {
    roots: Vec<PathBuf>,
    filter: NameFilter,
    inotify: Option<Inotify>,
    watches: HashMap<WatchDescriptor, (usize, String)>,
    buf: Vec<u8>,
    watch_errors: u64,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

impl Discovery {
    /// Discovery over `layout`'s hierarchies; with `use_inotify`, directory changes are also
    /// reported between walks.
    pub fn new(
        layout: &CgroupLayout,
        filter: NameFilter,
        use_inotify: bool,
    ) -> Result<Discovery, DiscoveryError> {
        let roots = layout.discovery_roots();
        let inotify = if use_inotify {
            Some(Inotify::init().map_err(|source| DiscoveryError::Inotify {
                path: roots.first().cloned().unwrap_or_default(),
                source,
            })?)
        } else {
            None
        };
        Ok(Discovery {
            roots,
            filter,
            inotify,
            watches: HashMap::new(),
            buf: vec![0; 64 * 1024],
            watch_errors: 0,
        })
    }

    /// The hierarchies walked.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The filter in use.
    pub fn filter(&self) -> &NameFilter {
        &self.filter
    }

    /// The inotify descriptor to poll for readability, if inotify is on.
    pub fn fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(|i| i.as_raw_fd())
    }

    /// Directories watched now.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// Watches that could not be added (e.g. `max_user_watches` reached); the periodic
    /// rescan still finds those containers.
    pub fn watch_errors(&self) -> u64 {
        self.watch_errors
    }

    /// Walks every hierarchy and returns the tracked container names (union over
    /// hierarchies). Adds inotify watches on directories not yet watched.
    pub fn scan(&mut self) -> Result<BTreeSet<String>, DiscoveryError> {
        let mut out = BTreeSet::new();
        for h in 0..self.roots.len() {
            let root = self.roots[h].clone();
            if let Err(source) = std::fs::metadata(&root) {
                return Err(DiscoveryError::ReadDir { path: root, source });
            }
            self.walk(h, "/".to_string(), &mut out);
        }
        Ok(out)
    }

    fn watch(&mut self, h: usize, name: &str, dir: &Path) {
        let Some(ino) = self.inotify.as_mut() else {
            return;
        };
        match ino.watches().add(dir, MASK) {
            Ok(wd) => {
                self.watches.insert(wd, (h, name.to_string()));
            }
            Err(e) if sys::is_vanished(&e) => {}
            Err(_) => self.watch_errors += 1,
        }
    }

    fn walk(&mut self, h: usize, name: String, out: &mut BTreeSet<String>) {
        let dir = cgroup_dir(&self.roots[h], &name);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return; // vanished (or unreadable) while walking: not an error
        };
        self.watch(h, &name, &dir);
        if self.filter.tracks(&name) {
            out.insert(name.clone());
        }
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(leaf) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let child = child_name(&name, &leaf);
            if self.filter.descends(&child) {
                self.walk(h, child, out);
            }
        }
    }

    /// Reads pending inotify events without blocking and appends the changes to `out`.
    /// Returns `true` if the kernel's queue overflowed (a full [`Discovery::scan`] is due).
    pub fn read_events(&mut self, out: &mut Vec<Change>) -> bool {
        let mut overflow = false;
        loop {
            let Some(ino) = self.inotify.as_mut() else {
                return false;
            };
            let mut raw: Vec<(WatchDescriptor, EventMask, Option<String>)> = Vec::new();
            match ino.read_events(&mut self.buf) {
                Ok(events) => {
                    for ev in events {
                        raw.push((
                            ev.wd.clone(),
                            ev.mask,
                            ev.name.and_then(|n| n.to_str()).map(str::to_string),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
            if raw.is_empty() {
                break;
            }
            for (wd, mask, leaf) in raw {
                if mask.contains(EventMask::Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                if mask.contains(EventMask::IGNORED) {
                    self.watches.remove(&wd);
                    continue;
                }
                let (Some((h, parent)), Some(leaf)) = (self.watches.get(&wd).cloned(), leaf) else {
                    continue;
                };
                if !mask.contains(EventMask::ISDIR) {
                    continue;
                }
                let child = child_name(&parent, &leaf);
                if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                    if self.filter.descends(&child) {
                        let mut found = BTreeSet::new();
                        self.walk(h, child, &mut found);
                        out.extend(found.into_iter().map(Change::Added));
                    }
                } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                    && self.filter.tracks(&child)
                    && !self.roots.iter().any(|r| cgroup_dir(r, &child).exists())
                {
                    out.push(Change::Removed(child));
                }
            }
        }
        overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FixtureCgroup, FixtureTree, Layout};

    fn names(v: &BTreeSet<String>) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn tree(layout: Layout) -> FixtureTree {
        let t = FixtureTree::new(layout);
        for n in [
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods/burstable/pod1",
            "/kubepods/burstable/pod1/c1",
            "/system.slice",
            "/system.slice/containerd.service",
        ] {
            t.add_cgroup(n, &FixtureCgroup::default());
        }
        t
    }

    #[test]
    fn scans_v1_v2_and_hybrid_trees_alike() {
        for layout in [Layout::V1, Layout::V2, Layout::Hybrid] {
            let t = tree(layout);
            let l = CgroupLayout::detect(t.root()).unwrap();
            let mut d = Discovery::new(&l, NameFilter::all(), false).unwrap();
            let found = d.scan().unwrap();
            assert_eq!(
                names(&found),
                vec![
                    "/",
                    "/kubepods",
                    "/kubepods/burstable",
                    "/kubepods/burstable/pod1",
                    "/kubepods/burstable/pod1/c1",
                    "/system.slice",
                    "/system.slice/containerd.service",
                ],
                "{layout:?}"
            );
        }
    }

    #[test]
    fn v1_names_are_the_union_over_hierarchies() {
        let t = FixtureTree::new(Layout::V1);
        // Only in the memory hierarchy (like this machine's /process_api cgroups).
        std::fs::create_dir_all(t.root().join("memory/only-memory")).unwrap();
        let l = CgroupLayout::detect(t.root()).unwrap();
        let found = Discovery::new(&l, NameFilter::all(), false)
            .unwrap()
            .scan()
            .unwrap();
        assert!(found.contains("/only-memory"));
    }

    #[test]
    fn prefix_filter_keeps_root_and_subtrees() {
        let t = tree(Layout::V2);
        let l = CgroupLayout::detect(t.root()).unwrap();
        let mut d =
            Discovery::new(&l, NameFilter::prefixes(["kubepods/burstable"]), false).unwrap();
        let found = d.scan().unwrap();
        assert_eq!(
            names(&found),
            vec![
                "/",
                "/kubepods/burstable",
                "/kubepods/burstable/pod1",
                "/kubepods/burstable/pod1/c1"
            ]
        );
        let f = NameFilter::prefixes(["/kubepods"]);
        assert!(f.tracks("/kubepods/x"));
        assert!(!f.tracks("/kubepods-other"));
        assert!(f.descends("/"));
        assert!(!f.descends("/system.slice"));
    }

    #[test]
    fn inotify_reports_creation_and_removal() {
        let t = tree(Layout::Hybrid);
        let l = CgroupLayout::detect(t.root()).unwrap();
        let mut d = Discovery::new(&l, NameFilter::all(), true).unwrap();
        d.scan().unwrap();
        assert!(d.watch_count() >= 7 * 6);
        let mut changes = Vec::new();
        assert!(!d.read_events(&mut changes));
        assert!(changes.is_empty());

        // A new pod with a container already inside (created before we read the event).
        t.add_cgroup("/kubepods/burstable/pod2", &FixtureCgroup::default());
        t.add_cgroup("/kubepods/burstable/pod2/c2", &FixtureCgroup::default());
        d.read_events(&mut changes);
        let added: BTreeSet<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Added(n) => Some(n.as_str()),
                Change::Removed(_) => None,
            })
            .collect();
        assert_eq!(
            added.into_iter().collect::<Vec<_>>(),
            vec!["/kubepods/burstable/pod2", "/kubepods/burstable/pod2/c2"]
        );

        changes.clear();
        t.remove_cgroup("/kubepods/burstable/pod2");
        d.read_events(&mut changes);
        assert!(changes.contains(&Change::Removed("/kubepods/burstable/pod2".into())));
        assert!(changes.contains(&Change::Removed("/kubepods/burstable/pod2/c2".into())));
    }
}
