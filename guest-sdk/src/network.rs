//! What mappings onto network schemas (OCSF, ECS, …) read out of a flow beyond its fields: counters by end of the
//! connection rather than by reporter, the policy that decided, protocol numbers.

use crate::{LabelsColumn, PoliciesColumn, PolicyHit, PolicyKind, Reporter};

/// A flow's counters by end of the connection: `(sent by the source, sent by the destination)`. Goldmane counts
/// `*_in`/`*_out` from the reporting endpoint's side, so a flow reported by its destination has them the other
/// way round. An unspecified or unknown reporter is taken as the source.
pub fn by_end(reporter: Reporter, counted_in: i64, counted_out: i64) -> (i64, i64) {
    match reporter {
        Reporter::Dst => (counted_in, counted_out),
        _ => (counted_out, counted_in),
    }
}

/// The IANA protocol number of a protocol name (any case), for the protocols Calico reports.
pub fn iana_protocol(proto: &str) -> Option<i64> {
    Some(match proto.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "icmpv6" | "icmp6" => 58,
        "sctp" => 132,
        _ => return None,
    })
}

/// The policy kind as Goldmane's API names it (`CalicoNetworkPolicy`, `NetworkPolicy` for Kubernetes', …).
pub fn policy_kind_name(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Unspecified => "Unspecified",
        PolicyKind::CalicoNetworkPolicy => "CalicoNetworkPolicy",
        PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
        PolicyKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
        PolicyKind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
        PolicyKind::NetworkPolicy => "NetworkPolicy",
        PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
        PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        PolicyKind::Profile => "Profile",
        PolicyKind::EndOfTier => "EndOfTier",
        PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        PolicyKind::Unknown => "Unknown",
    }
}

/// The rule that decided a flow: the last of its enforced hits (Goldmane lists them in evaluation order). An
/// end-of-tier hit is named after the policy it refers to (its trigger).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deciding<'a> {
    /// The policy's kind.
    pub kind: PolicyKind,
    /// Its namespace; empty for a cluster-wide policy.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its tier.
    pub tier: &'a str,
    /// The rule's position in the policy (-1: no rule matched, the tier's default action).
    pub rule_index: i64,
}

impl<'a> Deciding<'a> {
    /// The deciding rule of `enforced`, if it has a name.
    pub fn of(enforced: &'a [PolicyHit]) -> Option<Self> {
        Self::of_hit(enforced.last()?)
    }

    /// `hit` as a deciding rule, if it (or the policy it refers to) has a name.
    pub fn of_hit(hit: &'a PolicyHit) -> Option<Self> {
        let d = match (&hit.trigger, hit.kind) {
            (Some(t), PolicyKind::EndOfTier) => Deciding {
                kind: t.kind,
                namespace: &t.namespace,
                name: &t.name,
                tier: &t.tier,
                rule_index: hit.rule_index,
            },
            _ => Deciding {
                kind: hit.kind,
                namespace: &hit.namespace,
                name: &hit.name,
                tier: &hit.tier,
                rule_index: hit.rule_index,
            },
        };
        (!d.name.is_empty()).then_some(d)
    }

    /// `namespace/name`, or `name` for a cluster-wide policy: unique within a tier.
    pub fn id(&self) -> String {
        match self.namespace {
            "" => self.name.to_string(),
            ns => format!("{ns}/{}", self.name),
        }
    }
}

/// `tier/name` of each named hit, in order: what the mappings list as the flow's policies.
pub fn policy_names(hits: &[PolicyHit]) -> Vec<String> {
    hits.iter().filter(|h| !h.name.is_empty()).map(|h| format!("{}/{}", h.tier, h.name)).collect()
}

/// [`policy_names`] of every flow of a batch, from its policies column: each distinct name once.
pub fn policy_names_column(hits: &PoliciesColumn) -> LabelsColumn {
    let mut values: Vec<String> = Vec::new();
    let name_of: Vec<Option<u32>> = hits
        .hits
        .iter()
        .map(|h| {
            (!h.name.is_empty()).then(|| {
                let name = format!("{}/{}", h.tier, h.name);
                match values.iter().position(|n| *n == name) {
                    Some(i) => i as u32,
                    None => {
                        values.push(name);
                        values.len() as u32 - 1
                    }
                }
            })
        })
        .collect();
    let (mut at, mut starts) = (Vec::with_capacity(hits.at.len()), Vec::with_capacity(hits.starts.len()));
    for w in hits.starts.windows(2) {
        starts.push(at.len() as u32);
        at.extend(hits.at[w[0] as usize..w[1] as usize].iter().filter_map(|&k| name_of[k as usize]));
    }
    starts.push(at.len() as u32);
    LabelsColumn { values, at, starts }
}

/// The deciding hit of every flow of a batch, from its policies column: an index into `hits.hits`, or `None`
/// for a flow without enforced hits.
pub fn last_hits(hits: &PoliciesColumn) -> Vec<Option<usize>> {
    hits.starts.windows(2).map(|w| (w[1] > w[0]).then(|| hits.at[w[1] as usize - 1] as usize)).collect()
}

/// Unix seconds as RFC 3339 UTC (`2025-12-05T21:40:45Z`), as ECS dates and most stores read them.
pub fn rfc3339(unix_seconds: i64) -> String {
    let (days, secs) = (unix_seconds.div_euclid(86_400), unix_seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_970_845), "2025-12-05T21:40:45Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn counters_follow_the_reporter() {
        assert_eq!(by_end(Reporter::Src, 10, 20), (20, 10), "the source sent what it counted out");
        assert_eq!(by_end(Reporter::Dst, 10, 20), (10, 20), "the destination received what the source sent");
    }
}
