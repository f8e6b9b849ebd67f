//! How many connections a listener holds: at most [`ConnLimits::total`], and at most
//! [`ConnLimits::per_ip`] from one peer address. A connection past either limit is closed as
//! soon as it is accepted (shed), so that the accept loop never waits and connections that
//! send nothing cannot starve the ones that do. An [`Admitted`] connection gives its place back
//! when it is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::ShedLabels;

/// Default of `[server] max_connections`: per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of `[server] max_connections_per_ip`: per listener and peer address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub total: usize,
    pub per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            total: DEFAULT_MAX_CONNECTIONS,
            per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

/// Why a connection was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The listener holds `total` connections.
    Total,
    /// The peer address holds `per_ip` connections.
    PerIp,
    /// Too many TLS handshakes are under way.
    Handshakes,
}

impl Shed {
    /// `total`, `per_ip` or `handshakes` (the `reason` label of `tessera_connections_shed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Total => "total",
            Shed::PerIp => "per_ip",
            Shed::Handshakes => "handshakes",
        }
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// The connections one listener holds.
#[derive(Debug)]
pub struct Gate {
    limits: ConnLimits,
    held: Mutex<Held>,
    shed: Family<ShedLabels, Counter>,
}

impl Gate {
    /// A gate with `limits`, counting what it sheds into `shed`.
    pub fn new(limits: ConnLimits, shed: Family<ShedLabels, Counter>) -> Arc<Self> {
        Arc::new(Gate {
            limits,
            held: Mutex::new(Held::default()),
            shed,
        })
    }

    /// Returns a place for a connection from `ip`; fails (and counts it) when the listener or
    /// that address is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Shed> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = held.by_ip.get(&ip).copied().unwrap_or_default();
        let refused = if held.total >= self.limits.total {
            Some(Shed::Total)
        } else if from_ip >= self.limits.per_ip {
            Some(Shed::PerIp)
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(held);
            self.count(reason);
            return Err(reason);
        }
        held.total += 1;
        held.by_ip.insert(ip, from_ip + 1);
        Ok(Admitted {
            gate: Arc::clone(self),
            ip,
        })
    }

    /// Counts a connection shed for `reason`.
    pub fn count(&self, reason: Shed) {
        self.shed
            .get_or_create(&ShedLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Gives back the place of a connection from `ip`.
    fn release(&self, ip: IpAddr) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                held.by_ip.remove(&ip);
            }
        }
    }
}

/// A connection's place in its listener; given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(total: usize, per_ip: usize) -> Arc<Gate> {
        Gate::new(ConnLimits { total, per_ip }, Family::default())
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let gate = gate(10, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Shed::PerIp);
        let _other = gate.admit(b).unwrap();
        drop(first);
        gate.admit(a).expect("a place was given back");
    }

    #[test]
    fn the_listener_sheds_past_its_total() {
        let gate = gate(2, 10);
        let _held: Vec<_> = (1..=2)
            .map(|i| gate.admit(format!("10.0.0.{i}").parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            gate.admit("10.0.0.9".parse().unwrap()).unwrap_err(),
            Shed::Total
        );
    }
}
