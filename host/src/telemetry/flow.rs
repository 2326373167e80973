//! The flow-derived metric families (`flowgate.flow_metrics`): their labels and registration. The pipeline's
//! post-chain stage fills them (`pipeline::post::metrics`); they live here, with the gateway's other metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub kind: String,
    pub tier: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndOfTierLabels {
    pub tier: String,
    pub dest_namespace: String,
    pub dest_name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    pub source_namespace: String,
    pub source_type: String,
    pub dest_namespace: String,
    pub dest_type: String,
    pub proto: String,
    pub reporter: String,
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    #[prometheus(flatten)]
    pub traffic: TrafficLabels,
    /// `in` or `out`, as the reporting endpoint sees it.
    pub direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: &'static str,
}

/// The metric families, registered with the gateway's registry.
#[derive(Default)]
pub struct FlowFamilies {
    pub policy_flows: Family<PolicyLabels, Counter>,
    pub policy_packets: Family<PolicyLabels, Counter>,
    pub policy_bytes: Family<PolicyLabels, Counter>,
    pub end_of_tier_flows: Family<EndOfTierLabels, Counter>,
    pub end_of_tier_packets: Family<EndOfTierLabels, Counter>,
    pub end_of_tier_bytes: Family<EndOfTierLabels, Counter>,
    pub traffic_flows: Family<TrafficLabels, Counter>,
    pub traffic_packets: Family<DirectionLabels, Counter>,
    pub traffic_bytes: Family<DirectionLabels, Counter>,
    pub traffic_connections_started: Family<TrafficLabels, Counter>,
    pub traffic_connections_completed: Family<TrafficLabels, Counter>,
    pub folded_flows: Family<GroupLabel, Counter>,
    pub folded_series: Family<GroupLabel, Gauge>,
    pub series: Family<GroupLabel, Gauge>,
    otlp_pushes: Family<OutcomeLabel, Counter>,
    /// Data points in the last successful OTLP push.
    pub otlp_points: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl FlowFamilies {
    pub fn register(&self, r: &mut Registry) {
        let enforced = "from the enforced policy trace of flows after the transform chain";
        r.register("policy_flows", format!("Flows per policy and rule action, {enforced}"), self.policy_flows.clone());
        r.register(
            "policy_packets",
            format!("Packets (in + out) per policy and action, {enforced}"),
            self.policy_packets.clone(),
        );
        r.register(
            "policy_bytes",
            format!("Bytes (in + out) per policy and action, {enforced}"),
            self.policy_bytes.clone(),
        );
        r.register(
            "policy_end_of_tier_denied_flows",
            "Flows denied because no policy in a tier allowed them (end of tier), per destination",
            self.end_of_tier_flows.clone(),
        );
        r.register(
            "policy_end_of_tier_denied_packets",
            "Packets (in + out) of flows denied at the end of a tier, per destination",
            self.end_of_tier_packets.clone(),
        );
        r.register(
            "policy_end_of_tier_denied_bytes",
            "Bytes (in + out) of flows denied at the end of a tier, per destination",
            self.end_of_tier_bytes.clone(),
        );
        r.register(
            "traffic_flows",
            "Flows by namespace pair, endpoint types, protocol, reporter and action",
            self.traffic_flows.clone(),
        );
        r.register("traffic_packets", "Packets by namespace pair and direction", self.traffic_packets.clone());
        r.register("traffic_bytes", "Bytes by namespace pair and direction", self.traffic_bytes.clone());
        r.register(
            "traffic_connections_started",
            "Connections started, by namespace pair",
            self.traffic_connections_started.clone(),
        );
        r.register(
            "traffic_connections_completed",
            "Connections completed, by namespace pair",
            self.traffic_connections_completed.clone(),
        );
        r.register(
            "flow_metrics_folded_flows",
            "Flows counted in a group's __overflow__ series because the group reached flow_metrics.max_series",
            self.folded_flows.clone(),
        );
        r.register(
            "flow_metrics_folded_series",
            "Distinct label sets folded into a group's __overflow__ series",
            self.folded_series.clone(),
        );
        r.register("flow_metrics_series", "Label sets with their own series, per group", self.series.clone());
        r.register(
            "flow_metrics_otlp_pushes",
            "OTLP pushes of the flow metrics, by outcome (ok, error); cumulative, so an error loses nothing",
            self.otlp_pushes.clone(),
        );
        r.register("flow_metrics_otlp_points", "Data points in the last OTLP push", self.otlp_points.clone());
    }

    /// Counts one OTLP push (`ok` or `error`).
    pub fn pushed(&self, outcome: &'static str) {
        self.otlp_pushes.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// OTLP pushes with this outcome so far.
    pub fn pushes(&self, outcome: &'static str) -> u64 {
        self.otlp_pushes.get_or_create(&OutcomeLabel { outcome }).get()
    }

    /// A group's folded-flow count (tests, `flowgate check`).
    pub fn folded_flows(&self, group: &'static str) -> u64 {
        self.folded_flows.get_or_create(&GroupLabel { group }).get()
    }
}
