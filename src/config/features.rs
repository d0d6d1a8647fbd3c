//! Feature gates (`featureGates` in the file, `--feature-gates` on the command line), checked as
//! the kubelet of the Kubernetes release kubelet-rs follows ([`KUBERNETES_VERSION`]) checks them.
//!
//! [`KNOWN`] is that release's table: every gate the kubelet binary registers (its own
//! `pkg/features`, the generic API server's and apiextensions' gates it relists, component-base's
//! logging and zpages gates, client-go's), each with its default, its stage and whether it is
//! locked to its default, as `VersionedSpecs` evaluate at v1.33. Setting a gate nobody knows
//! fails with the kubelet's `unrecognized feature gate: X`; setting a locked gate to anything but
//! its default fails with `cannot set feature gate X to V, feature is locked to D`; setting a GA
//! or deprecated gate is allowed with the kubelet's warning. `AllAlpha` and `AllBeta` set every
//! alpha (beta) gate that is not locked and not set explicitly.
//!
//! Gates only record what was asked. Those kubelet-rs acts on are read with
//! [`FeatureGates::enabled`]: `CustomCPUCFSQuotaPeriod` (a `cpuCFSQuotaPeriod` other than 100 ms),
//! `ImageMaximumGCAge` (`imageMaximumGCAge`), `KubeletCrashLoopBackOffMax`
//! (`crashLoopBackOff.maxContainerRestartPeriod`) and `ReduceDefaultCrashLoopBackOffDecay` (1 s
//! doubling to 60 s). The others change nothing in
//! kubelet-rs: most concern the API server, controllers, the scheduler or kube-proxy, and the
//! kubelet features behind the rest are listed in [`super::support`].

use std::collections::BTreeMap;

/// The Kubernetes release whose kubelet kubelet-rs follows (flags, configuration, gates; the
/// `k8s-openapi` feature the crate is built with).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// A gate's maturity at [`KUBERNETES_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Alpha,
    Beta,
    Ga,
    Deprecated,
}

/// One known gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub name: &'static str,
    pub default: bool,
    pub stage: Stage,
    /// Locked to `default`: any other value is refused.
    pub locked: bool,
}

const fn g(name: &'static str, default: bool, stage: Stage, locked: bool) -> Gate {
    Gate {
        name,
        default,
        stage,
        locked,
    }
}

use Stage::{Alpha as A, Beta as B, Deprecated as D, Ga as G};

/// Every gate the v1.33 kubelet knows, sorted by name.
pub const KNOWN: &[Gate] = &[
    g("AggregatedDiscoveryRemoveBetaType", true, D, false),
    g("AllAlpha", false, A, false),
    g("AllBeta", false, B, false),
    g("AllowDNSOnlyNodeCSR", false, D, false),
    g(
        "AllowInsecureKubeletCertificateSigningRequests",
        false,
        D,
        false,
    ),
    g(
        "AllowOverwriteTerminationGracePeriodSeconds",
        false,
        D,
        false,
    ),
    g("AllowParsingUserUIDFromCertAuth", true, B, false),
    g("AllowServiceLBStatusOnNonLB", false, D, true),
    g("AllowUnsafeMalformedObjectDeletion", false, A, false),
    g("AnonymousAuthConfigurableEndpoints", true, B, false),
    g("AnyVolumeDataSource", true, G, true),
    g("APIResponseCompression", true, B, false),
    g("APIServerIdentity", true, B, false),
    g("APIServerTracing", true, B, false),
    g("APIServingWithRoutine", false, A, false),
    g("AuthorizeNodeWithSelectors", true, B, false),
    g("AuthorizeWithSelectors", true, B, false),
    g("BtreeWatchCache", true, G, true),
    g("CBORServingAndStorage", false, A, false),
    g("ClientsAllowCBOR", false, A, false),
    g("ClientsPreferCBOR", false, A, false),
    g("CloudControllerManagerWebhook", false, A, false),
    g("ClusterTrustBundle", false, B, false),
    g("ClusterTrustBundleProjection", false, B, false),
    g("ComponentFlagz", false, A, false),
    g("ComponentStatusz", false, A, false),
    g("ConcurrentWatchObjectDecode", false, B, false),
    g("ConsistentListFromCache", true, B, false),
    g("ContainerCheckpoint", true, B, false),
    g("ContainerStopSignals", false, A, false),
    g("ContextualLogging", true, B, false),
    g("CoordinatedLeaderElection", false, B, false),
    g("CPUManagerPolicyAlphaOptions", false, A, false),
    g("CPUManagerPolicyBetaOptions", true, B, false),
    g("CPUManagerPolicyOptions", true, G, true),
    g("CRDValidationRatcheting", true, G, true),
    g("CronJobsScheduledAnnotation", true, G, true),
    g("CrossNamespaceVolumeDataSource", false, A, false),
    g("CSIMigrationPortworx", true, G, true),
    g("CSIVolumeHealth", false, A, false),
    g("CustomCPUCFSQuotaPeriod", false, A, false),
    g("CustomResourceFieldSelectors", true, G, true),
    g("DeclarativeValidation", true, B, false),
    g("DeclarativeValidationTakeover", false, B, false),
    g("DeploymentReplicaSetTerminatingReplicas", false, A, false),
    g("DevicePluginCDIDevices", true, G, true),
    g("DisableAllocatorDualWrite", false, B, false),
    g("DisableCPUQuotaWithExclusiveCPUs", true, B, false),
    g("DisableNodeKubeProxyVersion", true, D, false),
    g("DRAAdminAccess", false, A, false),
    g("DRADeviceTaints", false, A, false),
    g("DRAPartitionableDevices", false, A, false),
    g("DRAPrioritizedList", false, A, false),
    g("DRAResourceClaimDeviceStatus", true, B, false),
    g("DynamicResourceAllocation", false, B, false),
    g("ElasticIndexedJob", true, G, true),
    g("EventedPLEG", false, A, false),
    g("ExecProbeTimeout", true, G, false),
    g("ExternalServiceAccountTokenSigner", false, A, false),
    g("GitRepoVolumeDriver", false, D, false),
    g("GracefulNodeShutdown", true, B, false),
    g("GracefulNodeShutdownBasedOnPodPriority", true, B, false),
    g("HonorPVReclaimPolicy", true, G, true),
    g("HPAConfigurableTolerance", false, A, false),
    g("HPAScaleToZero", false, A, false),
    g("ImageMaximumGCAge", true, B, false),
    g("ImageVolume", false, B, false),
    g("InformerResourceVersion", false, A, false),
    g("InOrderInformers", true, B, false),
    g("InPlacePodVerticalScaling", true, B, false),
    g("InPlacePodVerticalScalingAllocatedStatus", false, D, false),
    g("InPlacePodVerticalScalingExclusiveCPUs", false, A, false),
    g("InTreePluginPortworxUnregister", false, A, false),
    g("JobBackoffLimitPerIndex", true, G, true),
    g("JobManagedBy", true, B, false),
    g("JobPodReplacementPolicy", true, B, false),
    g("JobSuccessPolicy", true, G, true),
    g("KMSv1", false, D, false),
    g("KubeletCgroupDriverFromCRI", true, B, false),
    g("KubeletCrashLoopBackOffMax", false, A, false),
    g("KubeletEnsureSecretPulledImages", false, A, false),
    g("KubeletFineGrainedAuthz", true, B, false),
    g("KubeletInUserNamespace", false, A, false),
    g("KubeletPodResourcesDynamicResources", false, A, false),
    g("KubeletPodResourcesGet", false, A, false),
    g("KubeletPSI", false, A, false),
    g("KubeletRegistrationGetOnExistsOnly", false, D, false),
    g("KubeletSeparateDiskGC", true, B, false),
    g(
        "KubeletServiceAccountTokenForCredentialProviders",
        false,
        A,
        false,
    ),
    g("KubeletTracing", true, B, false),
    g("LegacySidecarContainers", false, D, false),
    g("ListFromCacheSnapshot", false, A, false),
    g("LoadBalancerIPMode", true, G, true),
    g(
        "LocalStorageCapacityIsolationFSQuotaMonitoring",
        false,
        B,
        false,
    ),
    g("LogarithmicScaleDown", true, G, true),
    g("LoggingAlphaOptions", false, A, false),
    g("LoggingBetaOptions", true, B, false),
    g("MatchLabelKeysInPodAffinity", true, G, true),
    g("MatchLabelKeysInPodTopologySpread", true, B, false),
    g("MaxUnavailableStatefulSet", false, A, false),
    g("MemoryManager", true, G, true),
    g("MemoryQoS", false, A, false),
    g("MultiCIDRServiceAllocator", true, G, false),
    g("MutableCSINodeAllocatableCount", false, A, false),
    g("MutatingAdmissionPolicy", false, A, false),
    g("NFTablesProxyMode", true, G, true),
    g("NodeInclusionPolicyInPodTopologySpread", true, G, true),
    g("NodeLogQuery", false, B, false),
    g("NodeSwap", true, B, false),
    g("OpenAPIEnums", true, B, false),
    g("OrderedNamespaceDeletion", true, B, false),
    g("PodAndContainerStatsFromCRI", false, A, false),
    g("PodDeletionCost", true, B, false),
    g("PodDisruptionConditions", true, G, true),
    g("PodIndexLabel", true, G, true),
    g("PodLevelResources", false, A, false),
    g("PodLifecycleSleepAction", true, B, false),
    g("PodLifecycleSleepActionAllowZero", true, B, false),
    g("PodLogsQuerySplitStreams", false, A, false),
    g("PodObservedGenerationTracking", false, A, false),
    g("PodReadyToStartContainersCondition", true, B, false),
    g("PodSchedulingReadiness", true, G, true),
    g("PodTopologyLabelsAdmission", false, A, false),
    g("PortForwardWebsockets", true, B, false),
    g("PreferSameTrafficDistribution", false, A, false),
    g("ProcMountType", true, B, false),
    g("QOSReserved", false, A, false),
    g("RecoverVolumeExpansionFailure", true, B, false),
    g("RecursiveReadOnlyMounts", true, G, true),
    g("ReduceDefaultCrashLoopBackOffDecay", false, A, false),
    g("RelaxedDNSSearchValidation", true, B, false),
    g("RelaxedEnvironmentVariableValidation", true, B, false),
    g("ReloadKubeletServerCertificateFile", true, B, false),
    g("RemoteRequestHeaderUID", true, B, false),
    g("ResilientWatchCacheInitialization", true, B, false),
    g("ResourceHealthStatus", false, A, false),
    g("RetryGenerateName", true, G, true),
    g("RotateKubeletServerCertificate", true, B, false),
    g("RuntimeClassInImageCriApi", false, A, false),
    g("SchedulerAsyncPreemption", true, B, false),
    g("SchedulerPopFromBackoffQ", true, B, false),
    g("SchedulerQueueingHints", true, B, false),
    g("SELinuxChangePolicy", true, B, false),
    g("SELinuxMount", false, B, false),
    g("SELinuxMountReadWriteOncePod", true, B, false),
    g("SeparateCacheWatchRPC", false, D, false),
    g("SeparateTaintEvictionController", true, B, false),
    g("ServiceAccountNodeAudienceRestriction", true, B, false),
    g("ServiceAccountTokenJTI", true, G, true),
    g("ServiceAccountTokenNodeBinding", true, G, true),
    g("ServiceAccountTokenNodeBindingValidation", true, G, true),
    g("ServiceAccountTokenPodNodeInfo", true, G, true),
    g("ServiceTrafficDistribution", true, G, true),
    g("SidecarContainers", true, G, true),
    g("SizeMemoryBackedVolumes", true, G, true),
    g("StatefulSetAutoDeletePVC", true, G, true),
    g("StatefulSetStartOrdinal", true, G, true),
    g("StorageCapacityScoring", false, A, false),
    g("StorageNamespaceIndex", true, D, false),
    g("StorageVersionAPI", false, A, false),
    g("StorageVersionHash", true, B, false),
    g("StorageVersionMigrator", false, A, false),
    g("StreamingCollectionEncodingToJSON", true, B, false),
    g("StreamingCollectionEncodingToProtobuf", true, B, false),
    g("StrictCostEnforcementForVAP", true, G, true),
    g("StrictCostEnforcementForWebhooks", true, G, true),
    g("StrictIPCIDRValidation", false, A, false),
    g("StructuredAuthenticationConfiguration", true, B, false),
    g("StructuredAuthorizationConfiguration", true, G, true),
    g("SupplementalGroupsPolicy", true, B, false),
    g("SystemdWatchdog", true, B, false),
    g("TopologyAwareHints", true, G, true),
    g("TopologyManagerPolicyAlphaOptions", false, A, false),
    g("TopologyManagerPolicyBetaOptions", true, B, false),
    g("TopologyManagerPolicyOptions", true, G, false),
    g("TranslateStreamCloseWebsocketRequests", true, B, false),
    g("UnauthenticatedHTTP2DOSMitigation", true, B, false),
    g("UnknownVersionInteroperabilityProxy", false, A, false),
    g("UserNamespacesPodSecurityStandards", false, A, false),
    g("UserNamespacesSupport", true, B, false),
    g("VolumeAttributesClass", false, B, false),
    g("WatchCacheInitializationPostStartHook", false, B, false),
    g("WatchFromStorageWithoutResourceVersion", false, D, true),
    g("WatchList", true, B, false),
    g("WatchListClient", false, B, false),
    g("WindowsCPUAndMemoryAffinity", false, A, false),
    g("WindowsGracefulNodeShutdown", false, A, false),
    g("WindowsHostNetwork", false, D, false),
    g("WinDSR", true, B, false),
    g("WinOverlay", true, B, false),
];

/// The gate named `name`, if the release knows it (names are case-sensitive, as in Go).
pub fn lookup(name: &str) -> Option<&'static Gate> {
    KNOWN.iter().find(|g| g.name == name)
}

/// Why a gate setting was refused; the texts are the kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("unrecognized feature gate: {0}")]
    Unknown(String),
    #[error("cannot set feature gate {name} to {value}, feature is locked to {default}")]
    Locked {
        name: String,
        value: bool,
        default: bool,
    },
    #[error("invalid value of {name}={value}, err: strconv.ParseBool: parsing {value:?}: invalid syntax")]
    BadValue { name: String, value: String },
    #[error("malformed pair {0:?}, expect string=bool")]
    Malformed(String),
}

/// The gates as set: explicit values over the release's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureGates {
    explicit: BTreeMap<String, bool>,
}

impl FeatureGates {
    /// Checks `set` against [`KNOWN`] and keeps it. Returns the gates and the kubelet's warnings
    /// for GA and deprecated gates that were set.
    pub fn new(set: &BTreeMap<String, bool>) -> Result<(Self, Vec<String>), GateError> {
        let mut warnings = Vec::new();
        for (name, &value) in set {
            let gate = lookup(name).ok_or_else(|| GateError::Unknown(name.clone()))?;
            if gate.locked && value != gate.default {
                return Err(GateError::Locked {
                    name: name.clone(),
                    value,
                    default: gate.default,
                });
            }
            match gate.stage {
                Stage::Ga => warnings.push(format!(
                    "Setting GA feature gate {name}={value}. It will be removed in a future release."
                )),
                Stage::Deprecated => warnings.push(format!(
                    "Setting deprecated feature gate {name}={value}. It will be removed in a future release."
                )),
                Stage::Alpha | Stage::Beta => {}
            }
        }
        Ok((
            Self {
                explicit: set.clone(),
            },
            warnings,
        ))
    }

    /// Whether `name` is on: its explicit value, else `AllAlpha`/`AllBeta` for an unlocked alpha
    /// (beta) gate, else its default. An unknown name is off.
    pub fn enabled(&self, name: &str) -> bool {
        if let Some(&v) = self.explicit.get(name) {
            return v;
        }
        let Some(gate) = lookup(name) else {
            return false;
        };
        let all = match gate.stage {
            Stage::Alpha if !gate.locked => self.explicit.get("AllAlpha"),
            Stage::Beta if !gate.locked => self.explicit.get("AllBeta"),
            _ => None,
        };
        all.copied().unwrap_or(gate.default)
    }

    /// The gates set explicitly.
    pub fn explicit(&self) -> &BTreeMap<String, bool> {
        &self.explicit
    }
}

/// Parses `--feature-gates` values (`A=true,B=false`, the flag repeatable), later values of a
/// key winning as with the kubelet's flag.
pub fn parse_flag(values: &[String]) -> Result<BTreeMap<String, bool>, GateError> {
    let mut out = BTreeMap::new();
    for item in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| GateError::Malformed(item.to_string()))?;
        let value = super::flags::go_bool(v.trim()).map_err(|_| GateError::BadValue {
            name: k.trim().to_string(),
            value: v.trim().to_string(),
        })?;
        out.insert(k.trim().to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_table_is_sorted_and_unique() {
        let names: Vec<String> = KNOWN.iter().map(|g| g.name.to_lowercase()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        // A locked gate's only allowed value is its default; GA gates are on.
        assert!(KNOWN
            .iter()
            .filter(|g| g.stage == Stage::Ga)
            .all(|g| g.default));
    }

    #[test]
    fn unknown_gates_are_refused_with_the_kubelets_message() {
        let err = FeatureGates::new(&set(&[("NoSuchGate", true)])).unwrap_err();
        assert_eq!(err.to_string(), "unrecognized feature gate: NoSuchGate");
        // Names are case-sensitive.
        let err = FeatureGates::new(&set(&[("nodeswap", true)])).unwrap_err();
        assert_eq!(err.to_string(), "unrecognized feature gate: nodeswap");
    }

    #[test]
    fn locked_gates_take_only_their_default() {
        let err = FeatureGates::new(&set(&[("SidecarContainers", false)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set feature gate SidecarContainers to false, feature is locked to true"
        );
        let (gates, warnings) = FeatureGates::new(&set(&[("SidecarContainers", true)])).unwrap();
        assert!(gates.enabled("SidecarContainers"));
        assert_eq!(
            warnings,
            ["Setting GA feature gate SidecarContainers=true. It will be removed in a future release."]
        );
        let (_, warnings) = FeatureGates::new(&set(&[("KMSv1", true)])).unwrap();
        assert!(warnings[0].starts_with("Setting deprecated feature gate KMSv1=true"));
    }

    #[test]
    fn defaults_explicit_values_and_all_alpha() {
        let (gates, warnings) = FeatureGates::new(&BTreeMap::new()).unwrap();
        assert!(warnings.is_empty());
        assert!(!gates.enabled("CustomCPUCFSQuotaPeriod"));
        assert!(gates.enabled("NodeSwap"));
        assert!(!gates.enabled("NoSuchGate"));
        let (gates, _) = FeatureGates::new(&set(&[
            ("CustomCPUCFSQuotaPeriod", true),
            ("NodeSwap", false),
        ]))
        .unwrap();
        assert!(gates.enabled("CustomCPUCFSQuotaPeriod"));
        assert!(!gates.enabled("NodeSwap"));
        let (gates, _) =
            FeatureGates::new(&set(&[("AllAlpha", true), ("KubeletPSI", false)])).unwrap();
        assert!(gates.enabled("CustomCPUCFSQuotaPeriod"));
        assert!(!gates.enabled("KubeletPSI"), "explicit beats AllAlpha");
        assert!(!gates.enabled("DynamicResourceAllocation"), "beta");
        let (gates, _) = FeatureGates::new(&set(&[("AllBeta", false)])).unwrap();
        assert!(!gates.enabled("NodeSwap"));
        assert!(
            gates.enabled("SidecarContainers"),
            "GA gates ignore AllBeta"
        );
    }

    #[test]
    fn flag_values_merge_and_later_ones_win() {
        let m = parse_flag(&[
            "NodeSwap=false,KubeletPSI=true".to_string(),
            "NodeSwap=true".to_string(),
        ])
        .unwrap();
        assert_eq!(m, set(&[("KubeletPSI", true), ("NodeSwap", true)]));
        assert_eq!(
            parse_flag(&["NodeSwap".to_string()])
                .unwrap_err()
                .to_string(),
            "malformed pair \"NodeSwap\", expect string=bool"
        );
        assert!(parse_flag(&["NodeSwap=maybe".to_string()])
            .unwrap_err()
            .to_string()
            .starts_with("invalid value of NodeSwap=maybe"));
    }
}
