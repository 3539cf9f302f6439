//! Background round-trip-time probes for the `ping` mode: ICMP echo through `surge-ping`,
//! falling back to timing a TCP connect where ICMP sockets are not permitted. Each node keeps
//! an exponentially weighted moving average; requests only read it.

use crate::config::RttProbe;
use crate::node::{Cluster, Node};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use surge_ping::{Client, Config as PingConfig, PingIdentifier, PingSequence, ICMP};

/// Weight of the newest sample in the moving average.
const ALPHA: f64 = 0.3;

/// Folds a sample into the moving average.
pub fn ewma(prev: Option<f64>, sample_us: f64) -> f64 {
    match prev {
        None => sample_us,
        Some(p) => ALPHA * sample_us + (1.0 - ALPHA) * p,
    }
}

/// Opens an ICMP client: unprivileged datagram socket first, then raw (needs CAP_NET_RAW).
fn icmp_client(ip: IpAddr) -> Option<Client> {
    let kind = if ip.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    for sock_type in [socket2::Type::DGRAM, socket2::Type::RAW] {
        let config = PingConfig::builder()
            .kind(kind)
            .sock_type_hint(sock_type)
            .build();
        if let Ok(c) = Client::new(&config) {
            return Some(c);
        }
    }
    None
}

async fn resolve(node: &Node) -> Option<SocketAddr> {
    tokio::net::lookup_host((node.addr.host.as_str(), node.addr.port))
        .await
        .ok()?
        .next()
}

async fn tcp_rtt(addr: SocketAddr, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(start.elapsed()),
        _ => None,
    }
}

/// Probes one node forever.
async fn watch(node: Arc<Node>, interval: Duration, probe: RttProbe) {
    let timeout = interval.min(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The client owns the receive task: it must live as long as its pinger.
    let mut icmp: Option<(IpAddr, Client, surge_ping::Pinger)> = None;
    let mut icmp_failed = probe == RttProbe::Tcp;
    let mut seq: u16 = 0;
    loop {
        ticker.tick().await;
        let Some(addr) = resolve(&node).await else {
            continue;
        };
        if icmp.as_ref().is_none_or(|(ip, _, _)| *ip != addr.ip()) && !icmp_failed {
            match icmp_client(addr.ip()) {
                Some(client) => {
                    let mut pinger = client
                        .pinger(addr.ip(), PingIdentifier(rand::random()))
                        .await;
                    pinger.timeout(timeout);
                    icmp = Some((addr.ip(), client, pinger));
                }
                None => {
                    icmp_failed = true;
                    log::warn!(
                        "ICMP sockets not permitted, using TCP connect RTT node={}",
                        node.name()
                    );
                }
            }
        }
        seq = seq.wrapping_add(1);
        let (sample, method) = match icmp.as_mut() {
            Some((_, _, pinger)) => match pinger.ping(PingSequence(seq), &[0; 16]).await {
                Ok((_, rtt)) => (Some(rtt), "icmp"),
                Err(_) => (None, "icmp"),
            },
            None => (tcp_rtt(addr, timeout).await, "tcp"),
        };
        // A lost probe counts as a full timeout, so a flaky node drifts out of favour.
        let us = sample.unwrap_or(timeout).as_secs_f64() * 1e6;
        node.update_health(|h| {
            h.rtt_us = Some(ewma(h.rtt_us, us));
            h.rtt_method = Some(method);
        });
    }
}

/// Starts one prober per node.
pub fn spawn(
    cluster: &Cluster,
    interval: Duration,
    probe: RttProbe,
) -> Vec<tokio::task::JoinHandle<()>> {
    cluster
        .all()
        .map(|n| tokio::spawn(watch(n.clone(), interval, probe)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_converges_and_smooths() {
        let mut v = None;
        v = Some(ewma(v, 100.0));
        assert_eq!(v, Some(100.0));
        for _ in 0..50 {
            v = Some(ewma(v, 200.0));
        }
        assert!((v.unwrap() - 200.0).abs() < 0.1, "{v:?}");
        let spike = ewma(Some(100.0), 10_000.0);
        assert!(spike < 10_000.0 && spike > 100.0);
    }
}
