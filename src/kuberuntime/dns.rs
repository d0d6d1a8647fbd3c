//! Pod DNS, as the kubelet's `pkg/kubelet/network/dns` configures it: the resolver settings
//! each pod's sandbox gets through `PodSandboxConfig.dns_config`, from which the runtime writes
//! the pod's `/etc/resolv.conf` (containerd writes `search`, `nameserver` and `options` lines;
//! with no settings at all it copies the host's file).
//!
//! By `dnsPolicy`:
//! - `ClusterFirst` (the default; `ClusterFirstWithHostNet` too, also for host-network pods): the
//!   cluster nameservers (`clusterDNS`), the search list `<namespace>.svc.<clusterDomain>
//!   svc.<clusterDomain> <clusterDomain>` followed by the host's search domains (duplicates
//!   dropped), and `options ndots:5`. Without `clusterDNS` the pod falls back to `Default`, with
//!   the kubelet's `MissingClusterDNS` warning. A host-network pod with `ClusterFirst` gets
//!   `Default`.
//! - `Default`: the host's resolver file (`resolvConf`); when that is set to `""`, host DNS is
//!   off: nameserver `127.0.0.1` (`::1` for an IPv6 node IP) and search `.`.
//! - `None`: nothing but the pod's `dnsConfig`.
//!
//! A pod's `dnsConfig` is then merged in (nameservers and searches appended without duplicates,
//! options overriding by name), and the result is cut to the resolver's limits: 3 nameservers,
//! 32 search domains of at most 253 characters and 2048 characters in all, each cut reported
//! with the kubelet's `DNSConfigForming` warning. The host file is parsed as the kubelet parses
//! it (`nameserver` lines accumulate, the last `search` and `options` lines win, a search
//! domain's trailing dot is dropped) and read at most 10 MiB.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};
use proto::cri;
use tokio::io::AsyncReadExt;

/// The most nameservers a resolver uses (glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains (the kubelet's expanded DNS config limits).
pub const MAX_SEARCH_PATHS: usize = 32;
/// The longest search line, domains joined by spaces.
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// The longest search domain (a DNS-1123 subdomain).
pub const MAX_SEARCH_DOMAIN_CHARS: usize = 253;
/// The most of the host's resolver file that is read.
pub const MAX_RESOLV_CONF_BYTES: u64 = 10 << 20;
/// The options of a cluster-DNS pod.
pub const CLUSTER_OPTIONS: &[&str] = &["ndots:5"];

/// The agent's DNS settings (`clusterDNS`, `clusterDomain`, `resolvConf`, `--node-ip`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// The host's resolver file; `None` when `resolvConf` is `""`.
    pub resolv_conf: Option<PathBuf>,
    /// The node's IPs as configured (`--node-ip`), for the loopback nameserver when host DNS
    /// is off.
    pub node_ips: Vec<IpAddr>,
}

/// Resolver settings: the host's, or a pod's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl From<ResolverConfig> for cri::DnsConfig {
    fn from(r: ResolverConfig) -> Self {
        cri::DnsConfig {
            servers: r.servers,
            searches: r.searches,
            options: r.options,
        }
    }
}

/// Why the host's resolver file cannot be used; the pod's sandbox is then not created.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read resolvConf {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("resolvConf {path} is larger than {MAX_RESOLV_CONF_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("resolvConf {path}: nameserver list is empty")]
    EmptyNameserver { path: PathBuf },
}

/// A warning to record on the pod (reason, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvent {
    pub reason: &'static str,
    pub message: String,
}

/// A `nameserver` line without an address (the kubelet refuses the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nameserver list is empty")]
pub struct EmptyNameserver;

/// Parses resolver file content as the kubelet does.
pub fn parse_resolv_conf(content: &str) -> Result<ResolverConfig, EmptyNameserver> {
    let mut r = ResolverConfig::default();
    let mut empty_nameserver = false;
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") => match fields.get(1) {
                Some(ns) => r.servers.push(ns.to_string()),
                None => empty_nameserver = true,
            },
            Some(&"search") => {
                r.searches = fields[1..]
                    .iter()
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect()
            }
            Some(&"options") => r.options = fields[1..].iter().map(|s| s.to_string()).collect(),
            _ => {}
        }
    }
    if empty_nameserver {
        Err(EmptyNameserver)
    } else {
        Ok(r)
    }
}

/// Reads and parses the host's resolver file; empty settings when host DNS is off.
pub async fn read_host_config(path: Option<&Path>) -> Result<ResolverConfig, DnsError> {
    let Some(path) = path else {
        return Ok(ResolverConfig::default());
    };
    let read = |source| DnsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read)?;
    let mut buf = Vec::new();
    file.take(MAX_RESOLV_CONF_BYTES + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(read)?;
    if buf.len() as u64 > MAX_RESOLV_CONF_BYTES {
        return Err(DnsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    parse_resolv_conf(&String::from_utf8_lossy(&buf)).map_err(|EmptyNameserver| {
        DnsError::EmptyNameserver {
            path: path.to_path_buf(),
        }
    })
}

/// What a pod's policy resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodDnsType {
    Cluster,
    Host,
    None,
}

fn dns_type(pod: &Pod) -> PodDnsType {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()) {
        Some("None") => PodDnsType::None,
        Some("ClusterFirstWithHostNet") => PodDnsType::Cluster,
        Some("Default") => PodDnsType::Host,
        // A host-network pod with ClusterFirst falls back to the host's DNS.
        Some("ClusterFirst") | None if host_network => PodDnsType::Host,
        // ClusterFirst, and (as the kubelet does) anything the API would have refused.
        _ => PodDnsType::Cluster,
    }
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_desc(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or("")
    )
}

/// The message of the kubelet's `MissingClusterDNS` event.
pub const MISSING_CLUSTER_DNS: &str = "kubelet does not have ClusterDNS IP configured and cannot \
     create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";

/// The pod's resolver settings (the kubelet's `GetPodDNS`), given the host's, with the
/// warnings to record on the pod.
pub fn pod_dns(
    settings: &DnsSettings,
    host: &ResolverConfig,
    pod: &Pod,
) -> (ResolverConfig, Vec<DnsEvent>) {
    let mut events = Vec::new();
    let mut dns = host.clone();
    let mut kind = dns_type(pod);
    if kind == PodDnsType::Cluster && settings.cluster_dns.is_empty() {
        events.push(DnsEvent {
            reason: "MissingClusterDNS",
            message: format!("pod: {:?}. {MISSING_CLUSTER_DNS}", pod_desc(pod)),
        });
        kind = PodDnsType::Host;
    }
    match kind {
        PodDnsType::None => dns = ResolverConfig::default(),
        PodDnsType::Cluster => {
            dns.servers = settings
                .cluster_dns
                .iter()
                .map(|ip| ip.to_string())
                .collect();
            dns.searches = cluster_searches(settings, &host.searches, pod);
            dns.options = CLUSTER_OPTIONS.iter().map(|o| o.to_string()).collect();
        }
        PodDnsType::Host if settings.resolv_conf.is_none() => {
            // Host DNS is off: the local resolver only, as the kubelet does.
            dns.servers = settings
                .node_ips
                .iter()
                .map(|ip| if ip.is_ipv6() { "::1" } else { "127.0.0.1" }.to_string())
                .collect();
            if dns.servers.is_empty() {
                dns.servers.push("127.0.0.1".into());
            }
            dns.searches = vec![".".into()];
        }
        PodDnsType::Host => {}
    }
    if let Some(pc) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        dns.servers = without_duplicates(
            dns.servers
                .into_iter()
                .chain(pc.nameservers.clone().into_iter().flatten()),
        );
        dns.searches = without_duplicates(
            dns.searches
                .into_iter()
                .chain(pc.searches.clone().into_iter().flatten()),
        );
        dns.options = merge_options(dns.options, pc.options.as_deref().unwrap_or(&[]));
    }
    fit_limits(&mut dns, &mut events);
    (dns, events)
}

/// `<ns>.svc.<domain> svc.<domain> <domain>` then the host's domains, each once.
fn cluster_searches(settings: &DnsSettings, host: &[String], pod: &Pod) -> Vec<String> {
    let domain = &settings.cluster_domain;
    if domain.is_empty() {
        return host.to_vec();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = [
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.clone(),
    ];
    without_duplicates(cluster.into_iter().chain(host.iter().cloned()))
}

fn without_duplicates(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Options by name: the pod's replace the base's in place, new ones are appended.
fn merge_options(base: Vec<String>, pod: &[PodDNSConfigOption]) -> Vec<String> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut set = |name: &str, value: Option<String>| match out.iter_mut().find(|(n, _)| n == name)
    {
        Some(entry) => entry.1 = value,
        None => out.push((name.to_string(), value)),
    };
    for o in &base {
        match o.split_once(':') {
            Some((n, v)) => set(n, Some(v.to_string())),
            None => set(o, None),
        }
    }
    for o in pod {
        set(o.name.as_deref().unwrap_or(""), o.value.clone());
    }
    out.into_iter()
        .map(|(n, v)| match v.filter(|v| !v.is_empty()) {
            Some(v) => format!("{n}:{v}"),
            None => n,
        })
        .collect()
}

/// Cuts the settings to the resolver's limits, with the kubelet's warnings.
fn fit_limits(dns: &mut ResolverConfig, events: &mut Vec<DnsEvent>) {
    if dns.servers.len() > MAX_NAMESERVERS {
        dns.servers.truncate(MAX_NAMESERVERS);
        events.push(DnsEvent {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                dns.servers.join(" ")
            ),
        });
    }
    let mut exceeded = dns.searches.len() > MAX_SEARCH_PATHS;
    dns.searches.truncate(MAX_SEARCH_PATHS);
    let before = dns.searches.len();
    dns.searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_CHARS);
    exceeded |= dns.searches.len() != before;
    while dns.searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        dns.searches.pop();
        exceeded = true;
    }
    if exceeded {
        events.push(DnsEvent {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                dns.searches.join(" ")
            ),
        });
    }
}

/// The kubelet's start-up check of the host's search line (`CheckLimitsForResolvConf`): a
/// warning when cluster pods would lose some of it.
pub fn check_host_limits(settings: &DnsSettings, host: &ResolverConfig) -> Option<String> {
    let path = settings.resolv_conf.as_ref()?.display().to_string();
    let mut limit = MAX_SEARCH_PATHS;
    if !settings.cluster_domain.is_empty() {
        limit -= 3;
    }
    if host.searches.len() > limit {
        return Some(format!(
            "Resolv.conf file '{path}' contains search line consisting of more than {limit} \
             domains!"
        ));
    }
    if host
        .searches
        .iter()
        .any(|s| s.len() > MAX_SEARCH_DOMAIN_CHARS)
    {
        return Some(format!(
            "Resolv.conf file {path:?} contains a search path which length is more than \
             allowed {MAX_SEARCH_DOMAIN_CHARS} chars!"
        ));
    }
    if host.searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        return Some(format!(
            "Resolv.conf file '{path}' contains search line which length is more than allowed \
             {MAX_SEARCH_LIST_CHARS} chars!"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
                        search corp.example. lab.example\noptions timeout:2 rotate\n";

    fn host() -> ResolverConfig {
        parse_resolv_conf(HOST).unwrap()
    }

    fn cluster() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            resolv_conf: Some("/etc/resolv.conf".into()),
            node_ips: Vec::new(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1"},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn parses_like_the_kubelet() {
        let h = host();
        assert_eq!(h.servers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(
            h.searches,
            ["corp.example", "lab.example"],
            "trailing dot dropped"
        );
        assert_eq!(h.options, ["timeout:2", "rotate"]);
        // The last search and options lines win; `domain` is not a search line for the kubelet.
        let h =
            parse_resolv_conf("search a\nsearch b c\ndomain d\noptions x\noptions y\n").unwrap();
        assert_eq!(
            (h.searches, h.options),
            (vec!["b".into(), "c".into()], vec!["y".to_string()])
        );
        assert!(parse_resolv_conf("nameserver\n").is_err());
    }

    #[test]
    fn cluster_first_gets_the_cluster_resolver() {
        let (dns, events) = pod_dns(
            &cluster(),
            &host(),
            &pod(json!({"dnsPolicy": "ClusterFirst"})),
        );
        assert!(events.is_empty());
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
        // The default policy is ClusterFirst.
        assert_eq!(pod_dns(&cluster(), &host(), &pod(json!({}))).0, dns);
        // Host search domains already in the cluster list appear once.
        let mut h = host();
        h.searches = vec!["cluster.local".into(), "x".into()];
        let (dns, _) = pod_dns(&cluster(), &h, &pod(json!({})));
        assert_eq!(
            dns.searches,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "x"
            ]
        );
    }

    #[test]
    fn host_network_pods_need_cluster_first_with_host_net() {
        let (dns, _) = pod_dns(
            &cluster(),
            &host(),
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirst"})),
        );
        assert_eq!(dns, host());
        let (dns, _) = pod_dns(
            &cluster(),
            &host(),
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
        );
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.searches[0], "prod.svc.cluster.local");
    }

    #[test]
    fn default_and_none() {
        let (dns, _) = pod_dns(&cluster(), &host(), &pod(json!({"dnsPolicy": "Default"})));
        assert_eq!(dns, host());
        let p = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let (dns, _) = pod_dns(&cluster(), &host(), &p);
        assert_eq!(dns.servers, ["192.0.2.1"]);
        assert_eq!(dns.searches, ["a.example"]);
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn dns_config_merges_into_the_policy() {
        let p = pod(json!({"dnsPolicy": "ClusterFirst", "dnsConfig": {
            "nameservers": ["10.96.0.10", "192.0.2.1"], "searches": ["extra.example", "svc.cluster.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}}));
        let (dns, _) = pod_dns(&cluster(), &host(), &p);
        assert_eq!(dns.servers, ["10.96.0.10", "192.0.2.1"]);
        assert_eq!(dns.searches.last().unwrap(), "extra.example");
        assert_eq!(
            dns.searches
                .iter()
                .filter(|s| *s == "svc.cluster.local")
                .count(),
            1
        );
        assert_eq!(dns.options, ["ndots:2", "single-request"]);
        let p = pod(
            json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "rotate"}, {"name": "timeout", "value": "5"}]}}),
        );
        let (dns, _) = pod_dns(&cluster(), &host(), &p);
        assert_eq!(dns.options, ["timeout:5", "rotate"]);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_default() {
        let mut s = cluster();
        s.cluster_dns.clear();
        let (dns, events) = pod_dns(&s, &host(), &pod(json!({"dnsPolicy": "ClusterFirst"})));
        assert_eq!(dns, host());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "MissingClusterDNS");
        assert_eq!(
            events[0].message,
            format!("pod: \"web_prod(u1)\". {MISSING_CLUSTER_DNS}")
        );
    }

    #[test]
    fn host_dns_off_uses_the_local_resolver() {
        let mut s = cluster();
        s.resolv_conf = None;
        let empty = ResolverConfig::default();
        let (dns, _) = pod_dns(&s, &empty, &pod(json!({"dnsPolicy": "Default"})));
        assert_eq!(dns.servers, ["127.0.0.1"]);
        assert_eq!(dns.searches, ["."]);
        s.node_ips = vec!["2001:db8::1".parse().unwrap()];
        let (dns, _) = pod_dns(&s, &empty, &pod(json!({"dnsPolicy": "Default"})));
        assert_eq!(dns.servers, ["::1"]);
        // Cluster pods still get the cluster resolver, without host search domains.
        let (dns, _) = pod_dns(&s, &empty, &pod(json!({})));
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.searches.len(), 3);
    }

    #[test]
    fn limits_are_applied_with_the_kubelets_warning() {
        let mut h = host();
        h.searches = (0..40).map(|i| format!("d{i}.example")).collect();
        h.searches.insert(1, "x".repeat(254));
        let p = pod(
            json!({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.9", "192.0.2.10"]}}),
        );
        let (dns, events) = pod_dns(&cluster(), &h, &p);
        assert_eq!(dns.servers, ["192.0.2.53", "192.0.2.54", "192.0.2.9"]);
        assert_eq!(
            dns.searches.len(),
            31,
            "32 kept, then the over-long one dropped"
        );
        assert!(dns
            .searches
            .iter()
            .all(|s| s.len() <= MAX_SEARCH_DOMAIN_CHARS));
        assert_eq!(events.len(), 2);
        assert!(events[0]
            .message
            .starts_with("Nameserver limits were exceeded"));
        assert!(events[1]
            .message
            .starts_with("Search Line limits were exceeded"));
        // The 2048-character line limit cuts from the end.
        h.searches = (0..20)
            .map(|i| format!("{i:02}{}", "a".repeat(150)))
            .collect();
        let (dns, _) = pod_dns(&cluster(), &h, &pod(json!({"dnsPolicy": "Default"})));
        assert!(dns.searches.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        assert_eq!(dns.searches.len(), 13);
        assert!(dns.searches[12].starts_with("12"));
    }

    #[test]
    fn host_limits_are_checked_at_start() {
        let mut h = host();
        assert_eq!(check_host_limits(&cluster(), &h), None);
        h.searches = (0..30).map(|i| format!("d{i}")).collect();
        let w = check_host_limits(&cluster(), &h).unwrap();
        assert!(w.contains("more than 29 domains"), "{w}");
    }

    #[tokio::test]
    async fn reads_the_host_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, HOST).unwrap();
        assert_eq!(read_host_config(Some(&path)).await.unwrap(), host());
        assert_eq!(
            read_host_config(None).await.unwrap(),
            ResolverConfig::default()
        );
        let err = read_host_config(Some(&dir.path().join("absent")))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read resolvConf"),
            "{err}"
        );
        std::fs::write(&path, "nameserver\n").unwrap();
        let err = read_host_config(Some(&path)).await.unwrap_err();
        assert!(
            err.to_string().ends_with("nameserver list is empty"),
            "{err}"
        );
    }
}
