//! Facts about the node the agent needs before the collector runs: its IP addresses (the
//! kubelet's `--node-ip` or the address of the default-route interface) and its CPU and memory
//! capacity. Roots are parameters so tests use fixture files.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The default-route interface from `/proc/net/route` content.
pub fn default_route_interface(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// IPv4 addresses per interface, from the kernel (getifaddrs).
fn interface_addrs() -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list that we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, ip));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// The node's IPs: `--node-ip` when given, else the first IPv4 address of the default-route
/// interface, else the first non-loopback IPv4 address, else 127.0.0.1.
pub fn host_ips(node_ip: Option<IpAddr>, proc_root: &Path) -> Vec<String> {
    if let Some(ip) = node_ip {
        return vec![ip.to_string()];
    }
    let addrs = interface_addrs();
    let route = fs::read_to_string(proc_root.join("net/route")).unwrap_or_default();
    if let Some(iface) = default_route_interface(&route) {
        if let Some((_, ip)) = addrs.iter().find(|(n, _)| *n == iface) {
            return vec![ip.to_string()];
        }
    }
    if let Some((_, ip)) = addrs.iter().find(|(_, ip)| !ip.is_loopback()) {
        return vec![ip.to_string()];
    }
    vec![Ipv4Addr::LOCALHOST.to_string()]
}

/// `MemTotal` in bytes from `/proc/meminfo` content.
pub fn mem_total(meminfo: &str) -> Option<i64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// (CPU capacity in millicores, memory capacity in bytes).
pub fn capacity(proc_root: &Path) -> (i64, i64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i64;
    let mem = fs::read_to_string(proc_root.join("meminfo"))
        .ok()
        .and_then(|s| mem_total(&s))
        .unwrap_or(0);
    (cpus * 1000, mem)
}

/// The machine's hostname, lowercased (the default node name).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_and_meminfo() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\n"), None);
        assert_eq!(
            mem_total("MemTotal:       24608264 kB\nMemFree: 1 kB\n"),
            Some(24608264 * 1024)
        );
    }

    #[test]
    fn node_ip_override_wins() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            host_ips(Some(ip), Path::new("/nonexistent")),
            vec!["192.0.2.7"]
        );
        assert!(!host_ips(None, Path::new("/proc")).is_empty());
    }
}
