//! Image garbage collection (`pkg/kubelet/images/image_gc_manager.go`).
//!
//! The manager tracks every image the runtime has: when it was first detected and when it was
//! last seen in use. A collection:
//! 1. detects images (new ones are stamped "first detected now"; images used by any container
//!    the runtime has, running or exited, are stamped "last used now"; the sandbox image and
//!    images the runtime pins are never candidates);
//! 2. deletes images unused for longer than the maximum age, if one is set (and the manager has
//!    run that long);
//! 3. when the image filesystem is at or above the high threshold, deletes unused images, least
//!    recently used first (ties: first detected first), skipping images younger than the
//!    minimum age, until usage is back to the low threshold. An image that cannot be deleted
//!    is logged and skipped. Falling short records `FreeDiskSpaceFailed`.
//!
//! The eviction manager calls [`ImageGcManager::delete_unused_images`] (every eligible image,
//! whatever the thresholds) to relieve disk pressure before evicting pods.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::events::{reason, EventSink, EventType, ObjectRef};

/// Image GC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// At or above this image-fs usage (percent), collect.
    pub high_threshold_percent: u8,
    /// Collect down to this usage (percent).
    pub low_threshold_percent: u8,
    /// Never delete an image detected less than this long ago.
    pub min_age: Duration,
    /// Delete images unused for longer than this (zero: never by age).
    pub max_age: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

/// An image as the runtime lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeImage {
    /// Image ID (`sha256:...`).
    pub id: String,
    /// Tags (`registry/repo:tag`).
    pub repo_tags: Vec<String>,
    /// Digests (`registry/repo@sha256:...`).
    pub repo_digests: Vec<String>,
    /// Size, bytes.
    pub size: u64,
    /// The runtime pins it (its own sandbox image).
    pub pinned: bool,
}

impl RuntimeImage {
    /// Whether `reference` (an ID, tag or digest) names this image.
    pub fn is(&self, reference: &str) -> bool {
        self.id == reference
            || self.repo_tags.iter().any(|t| t == reference)
            || self.repo_digests.iter().any(|d| d == reference)
    }
}

/// Capacity and availability of the image filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageFsUsage {
    /// Total bytes.
    pub capacity: u64,
    /// Available bytes.
    pub available: u64,
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {object}: {message}")]
pub struct ImageServiceError {
    /// The operation (`list images`, `remove image`, ...).
    pub op: &'static str,
    /// The object (image ID; empty for lists).
    pub object: String,
    /// What the runtime said.
    pub message: String,
}

/// What image GC needs from the runtime.
pub trait ImageService: Send + Sync {
    /// Every image the runtime has.
    fn list_images(&self) -> Result<Vec<RuntimeImage>, ImageServiceError>;
    /// References (IDs, names) of the images of every container the runtime has, running or
    /// not.
    fn images_in_use(&self) -> Result<HashSet<String>, ImageServiceError>;
    /// Removes an image by ID.
    fn remove_image(&self, id: &str) -> Result<(), ImageServiceError>;
    /// The image filesystem's capacity and availability.
    fn image_fs(&self) -> Result<ImageFsUsage, ImageServiceError>;
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    /// The runtime could not be asked.
    #[error(transparent)]
    Runtime(#[from] ImageServiceError),
    /// The image filesystem reports no capacity.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Not enough could be freed.
    #[error("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free.")]
    NotEnough {
        /// Bytes to free.
        wanted: u64,
        /// Bytes freed.
        freed: u64,
    },
    /// Some images could not be deleted.
    #[error("wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {errors}")]
    Deletion {
        /// Bytes to free.
        wanted: u64,
        /// Bytes freed.
        freed: u64,
        /// The deletion errors, joined.
        errors: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Record {
    first_detected: Instant,
    last_used: Option<Instant>,
    size: u64,
    pinned: bool,
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// IDs of deleted images.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub freed: u64,
}

/// The image GC manager.
pub struct ImageGcManager {
    policy: ImageGcPolicy,
    service: Arc<dyn ImageService>,
    events: Arc<dyn EventSink>,
    node: ObjectRef,
    clock: Arc<dyn Clock>,
    /// Image references never collected (the sandbox image).
    keep: Vec<String>,
    started: Instant,
    records: Mutex<HashMap<String, Record>>,
}

impl ImageGcManager {
    /// A manager for node `node`; `keep` lists references never collected (the pod infra
    /// image).
    pub fn new(
        node: &str,
        policy: ImageGcPolicy,
        keep: Vec<String>,
        service: Arc<dyn ImageService>,
        events: Arc<dyn EventSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<ImageGcManager> {
        let started = clock.now();
        Arc::new(ImageGcManager {
            policy,
            service,
            events,
            node: ObjectRef::node(node),
            clock,
            keep,
            started,
            records: Mutex::new(HashMap::new()),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &ImageGcPolicy {
        &self.policy
    }

    /// Refreshes the records; returns the images (that the runtime has) now in eviction order:
    /// unused, unpinned, not kept, least recently used first.
    fn candidates(&self, now: Instant) -> Result<Vec<(String, Record)>, ImageGcError> {
        let images = self.service.list_images()?;
        let in_use = self.service.images_in_use()?;
        let mut records = self.records.lock();
        let mut present = HashSet::new();
        let mut used_ids = HashSet::new();
        for img in &images {
            present.insert(img.id.clone());
            let used = in_use.iter().any(|r| img.is(r));
            let kept = self.keep.iter().any(|r| img.is(r));
            let rec = records.entry(img.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: img.size,
                pinned: img.pinned,
            });
            rec.size = img.size;
            rec.pinned = img.pinned || kept;
            if used {
                rec.last_used = Some(now);
                used_ids.insert(img.id.clone());
            }
        }
        records.retain(|id, _| present.contains(id));
        let mut out: Vec<(String, Record)> = records
            .iter()
            .filter(|(id, r)| !used_ids.contains(*id) && !r.pinned)
            .map(|(id, r)| (id.clone(), *r))
            .collect();
        // Never used sorts before every used image; ties go by first detection.
        out.sort_by_key(|(id, r)| (r.last_used, r.first_detected, id.clone()));
        Ok(out)
    }

    fn remove(&self, id: &str) -> Result<(), ImageServiceError> {
        tracing::info!(image = %id, "removing image to free bytes");
        self.service.remove_image(id)?;
        self.records.lock().remove(id);
        Ok(())
    }

    /// Deletes eligible images, in order, until `wanted` bytes are freed.
    fn free_space(
        &self,
        wanted: u64,
        now: Instant,
        candidates: &[(String, Record)],
        report: &mut GcReport,
    ) -> Result<(), ImageGcError> {
        let mut errors = Vec::new();
        let start = report.freed;
        for (id, r) in candidates {
            if report.freed - start >= wanted {
                break;
            }
            if now.saturating_duration_since(r.first_detected) < self.policy.min_age {
                tracing::debug!(image = %id, "image is younger than the minimum GC age");
                continue;
            }
            match self.remove(id) {
                Ok(()) => {
                    report.deleted.push(id.clone());
                    report.freed += r.size;
                }
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "cannot remove image; skipping it");
                    errors.push(e.to_string());
                }
            }
        }
        if !errors.is_empty() {
            return Err(ImageGcError::Deletion {
                wanted,
                freed: report.freed - start,
                errors: errors.join("; "),
            });
        }
        Ok(())
    }

    /// One periodic collection (`GarbageCollect`).
    pub fn garbage_collect(&self) -> Result<GcReport, ImageGcError> {
        let now = self.clock.now();
        let mut report = GcReport::default();
        let mut candidates = self.candidates(now)?;
        if !self.policy.max_age.is_zero()
            && now.saturating_duration_since(self.started) > self.policy.max_age
        {
            let mut errors = Vec::new();
            candidates.retain(|(id, r)| {
                let last = r.last_used.unwrap_or(r.first_detected);
                if now.saturating_duration_since(last) <= self.policy.max_age {
                    return true;
                }
                match self.remove(id) {
                    Ok(()) => {
                        report.deleted.push(id.clone());
                        report.freed += r.size;
                        false
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        true
                    }
                }
            });
            if !errors.is_empty() {
                tracing::warn!(errors = %errors.join("; "), "cannot remove images older than the maximum GC age");
            }
        }
        let fs = self.service.image_fs()?;
        let capacity = fs.capacity;
        let available = fs.available.min(capacity);
        if capacity == 0 {
            let e = ImageGcError::InvalidCapacity;
            self.events.event(
                &self.node,
                EventType::Warning,
                reason::INVALID_DISK_CAPACITY,
                &e.to_string(),
            );
            return Err(e);
        }
        let usage_percent = 100 - (available as u128 * 100 / capacity as u128) as u64;
        if usage_percent < u64::from(self.policy.high_threshold_percent) {
            return Ok(report);
        }
        let wanted = (capacity as u128 * u128::from(100 - self.policy.low_threshold_percent) / 100)
            .saturating_sub(available as u128) as u64;
        tracing::info!(
            usage = usage_percent,
            high = self.policy.high_threshold_percent,
            low = self.policy.low_threshold_percent,
            wanted,
            "image filesystem over the high threshold: freeing space down to the low threshold"
        );
        let before = report.freed;
        self.free_space(wanted, now, &candidates, &mut report)?;
        let freed = report.freed - before;
        if freed < wanted {
            let e = ImageGcError::NotEnough { wanted, freed };
            self.events.event(
                &self.node,
                EventType::Warning,
                reason::FREE_DISK_SPACE_FAILED,
                &e.to_string(),
            );
            return Err(e);
        }
        Ok(report)
    }

    /// Deletes every unused image old enough to go (for the eviction manager).
    pub fn delete_unused_images(&self) -> Result<GcReport, ImageGcError> {
        tracing::info!("attempting to delete unused images");
        let now = self.clock.now();
        let candidates = self.candidates(now)?;
        let mut report = GcReport::default();
        self.free_space(u64::MAX, now, &candidates, &mut report)?;
        Ok(report)
    }
}

impl crate::eviction::DeleteUnusedImages for ImageGcManager {
    fn delete_unused_images(&self) -> Result<u64, ImageGcError> {
        ImageGcManager::delete_unused_images(self).map(|r| r.freed)
    }
}

/// Records `ImageGCFailed` when collections fail twice in a row, as the kubelet's GC loop.
#[derive(Debug, Default)]
pub struct FailureTracker {
    previous_failed: bool,
}

impl FailureTracker {
    /// Feeds one result; returns whether an `ImageGCFailed`/`ContainerGCFailed` event is due.
    pub fn failed(&mut self, failed: bool) -> bool {
        let due = failed && self.previous_failed;
        self.previous_failed = failed;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::events::testing::RecordingSink;

    #[derive(Default)]
    struct FakeRuntime {
        images: Mutex<Vec<RuntimeImage>>,
        in_use: Mutex<HashSet<String>>,
        fs: Mutex<ImageFsUsage>,
        removed: Mutex<Vec<String>>,
        broken: Mutex<HashSet<String>>,
    }

    impl ImageService for FakeRuntime {
        fn list_images(&self) -> Result<Vec<RuntimeImage>, ImageServiceError> {
            Ok(self.images.lock().clone())
        }
        fn images_in_use(&self) -> Result<HashSet<String>, ImageServiceError> {
            Ok(self.in_use.lock().clone())
        }
        fn remove_image(&self, id: &str) -> Result<(), ImageServiceError> {
            if self.broken.lock().contains(id) {
                return Err(ImageServiceError {
                    op: "remove image",
                    object: id.into(),
                    message: "image is in use by a container".into(),
                });
            }
            self.removed.lock().push(id.into());
            let mut imgs = self.images.lock();
            if let Some(i) = imgs.iter().position(|x| x.id == id) {
                let img = imgs.remove(i);
                self.fs.lock().available += img.size;
            }
            Ok(())
        }
        fn image_fs(&self) -> Result<ImageFsUsage, ImageServiceError> {
            Ok(*self.fs.lock())
        }
    }

    fn img(id: &str, tag: &str, size: u64) -> RuntimeImage {
        RuntimeImage {
            id: id.into(),
            repo_tags: vec![tag.into()],
            repo_digests: vec![],
            size,
            pinned: false,
        }
    }

    fn setup(
        policy: ImageGcPolicy,
    ) -> (
        Arc<FakeRuntime>,
        Arc<RecordingSink>,
        Arc<FakeClock>,
        Arc<ImageGcManager>,
    ) {
        let rt = Arc::new(FakeRuntime::default());
        let sink = Arc::new(RecordingSink::default());
        let clock = FakeClock::new();
        let m = ImageGcManager::new(
            "node-1",
            policy,
            vec!["registry/pause:3.10".into()],
            rt.clone(),
            sink.clone(),
            clock.clone(),
        );
        (rt, sink, clock, m)
    }

    #[test]
    fn lru_first_never_in_use_pause_pinned_or_young_images() {
        let (rt, sink, clock, m) = setup(ImageGcPolicy::default());
        *rt.images.lock() = vec![
            img("sha256:pause", "registry/pause:3.10", 500),
            img("sha256:busybox", "registry/busybox:1.35", 1000),
            img("sha256:old", "registry/old:1", 3000),
            img("sha256:older", "registry/older:1", 2000),
            RuntimeImage {
                pinned: true,
                ..img("sha256:pinned", "registry/pinned:1", 9000)
            },
        ];
        rt.in_use.lock().insert("registry/busybox:1.35".into());
        rt.in_use.lock().insert("sha256:old".into());
        // 90% used out of 100k.
        *rt.fs.lock() = ImageFsUsage {
            capacity: 100_000,
            available: 10_000,
        };
        // First pass: everything is younger than the minimum age.
        let err = m.garbage_collect().unwrap_err();
        assert!(
            matches!(
                err,
                ImageGcError::NotEnough {
                    wanted: 10_000,
                    freed: 0
                }
            ),
            "{err}"
        );
        assert_eq!(
            sink.find("FreeDiskSpaceFailed").unwrap().3,
            "Failed to garbage collect required amount of images. Attempted to free 10000 bytes, but only found 0 bytes eligible to free."
        );
        // "old" stops being used: it was last used now, "older" never was (detected at t0).
        clock.advance(Duration::from_secs(60));
        rt.in_use.lock().remove("sha256:old");
        m.garbage_collect().unwrap_err();
        clock.advance(Duration::from_secs(121));
        let err = m.garbage_collect().unwrap_err();
        assert!(
            matches!(err, ImageGcError::NotEnough { freed: 5000, .. }),
            "{err}"
        );
        assert_eq!(*rt.removed.lock(), vec!["sha256:older", "sha256:old"]);
        assert!(rt.images.lock().iter().any(|i| i.id == "sha256:busybox"));
        assert!(rt.images.lock().iter().any(|i| i.id == "sha256:pause"));
        assert!(rt.images.lock().iter().any(|i| i.id == "sha256:pinned"));
    }

    #[test]
    fn stops_once_down_to_the_low_threshold_and_skips_undeletable_images() {
        let (rt, _sink, clock, m) = setup(ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(1),
            max_age: Duration::ZERO,
        });
        *rt.images.lock() = vec![
            img("sha256:a", "a:1", 4000),
            img("sha256:b", "b:1", 4000),
            img("sha256:c", "c:1", 4000),
        ];
        *rt.fs.lock() = ImageFsUsage {
            capacity: 100_000,
            available: 14_000,
        };
        m.garbage_collect().unwrap_err();
        clock.advance(Duration::from_secs(2));
        rt.broken.lock().insert("sha256:a".into());
        // 86% used: free 6000 to reach 80%. "a" fails, "b" and "c" go.
        let err = m.garbage_collect().unwrap_err();
        assert!(
            matches!(err, ImageGcError::Deletion { freed: 8000, .. }),
            "{err}"
        );
        assert_eq!(*rt.removed.lock(), vec!["sha256:b", "sha256:c"]);
        // Below the high threshold now: nothing happens.
        assert_eq!(m.garbage_collect().unwrap(), GcReport::default());
    }

    #[test]
    fn below_the_high_threshold_nothing_is_deleted_but_unused_images_still_go_on_demand() {
        let (rt, _sink, clock, m) = setup(ImageGcPolicy {
            min_age: Duration::from_secs(10),
            ..Default::default()
        });
        *rt.images.lock() = vec![img("sha256:a", "a:1", 100), img("sha256:b", "b:1", 200)];
        rt.in_use.lock().insert("b:1".into());
        *rt.fs.lock() = ImageFsUsage {
            capacity: 1000,
            available: 900,
        };
        assert!(m.garbage_collect().unwrap().deleted.is_empty());
        clock.advance(Duration::from_secs(10));
        let r = m.delete_unused_images().unwrap();
        assert_eq!(r.deleted, vec!["sha256:a"]);
        assert_eq!(r.freed, 100);
    }

    #[test]
    fn images_unused_past_the_maximum_age_go_regardless_of_usage() {
        let (rt, _sink, clock, m) = setup(ImageGcPolicy {
            min_age: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
            ..Default::default()
        });
        *rt.images.lock() = vec![img("sha256:a", "a:1", 100), img("sha256:b", "b:1", 200)];
        rt.in_use.lock().insert("sha256:b".into());
        *rt.fs.lock() = ImageFsUsage {
            capacity: 1000,
            available: 900,
        };
        m.garbage_collect().unwrap();
        clock.advance(Duration::from_secs(3601));
        let r = m.garbage_collect().unwrap();
        assert_eq!(r.deleted, vec!["sha256:a"]);
    }

    #[test]
    fn a_zero_capacity_filesystem_is_reported() {
        let (rt, sink, _clock, m) = setup(ImageGcPolicy::default());
        *rt.fs.lock() = ImageFsUsage::default();
        assert!(matches!(
            m.garbage_collect(),
            Err(ImageGcError::InvalidCapacity)
        ));
        assert!(sink.find("InvalidDiskCapacity").is_some());
    }

    #[test]
    fn failures_are_reported_on_the_second_in_a_row() {
        let mut t = FailureTracker::default();
        assert!(!t.failed(true));
        assert!(t.failed(true));
        assert!(!t.failed(false));
        assert!(!t.failed(true));
    }
}
