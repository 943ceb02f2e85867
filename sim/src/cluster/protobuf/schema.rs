//! The protobuf layout of the served built-in kinds as data: `table.rs` (generated) lists each
//! message's fields with their numbers, JSON names and types, so that one decoder serves every
//! kind instead of a conversion written per type.

use super::table::{KINDS, MESSAGES};

/// One protobuf message of the Kubernetes API, named by its k8s-pb path
/// (`api::apps::v1::Deployment`).
pub(super) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

pub(super) struct Field {
    pub tag: u32,
    /// The field's name in the JSON form (`podIP`; the protobuf name prost's snake case loses).
    pub json: &'static str,
    pub ty: Ty,
    pub repeated: bool,
}

/// The Kubernetes protos use these types only: no enums (enumerations are strings), no
/// oneofs, maps keyed by strings. (`double` occurs only in kinds not served here: the
/// generated table would name `Ty::Double` and fail to compile if one were added.)
pub(super) enum Ty {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Message(&'static str),
    /// A Go struct embedded with `json:",inline"`: a message field on the wire, its fields at
    /// the outer level in JSON (a Volume's `VolumeSource`, a Probe's handler).
    Inline(&'static str),
    MapOfString,
    MapOfBytes,
    MapOf(&'static str),
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.tag == tag)
    }

    /// The Go type's name (`DeploymentSpec`).
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit("::").next().unwrap_or(self.name)
    }
}

pub(super) fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok().map(|i| &MESSAGES[i])
}

/// The message of a served built-in kind or its list (`DeploymentList`); `None` for custom
/// resources, which have no protobuf encoding.
pub(super) fn kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let found = |k: &str| KINDS.iter().find(|(a, known, _)| *a == api_version && *known == k).map(|(_, _, m)| *m);
    match found(kind) {
        Some(m) => message(m),
        None => {
            let item = found(kind.strip_suffix("List")?)?;
            MESSAGES.iter().find(|m| m.name.strip_suffix("List") == Some(item))
        }
    }
}

/// Scalar fields that are pointers in the Go types, for which zero is a value and not "unset".
///
/// The Go encoder writes every non-pointer field, zero or not, while its JSON encoder leaves
/// zero `omitempty` fields out; the wire cannot tell `paused: false` (a non-pointer at zero,
/// absent from the JSON body) from `replicas: 0` (a pointer set to zero, present in it). The
/// decoder drops zero scalars, as the JSON body would, except these, where dropping would let
/// a default replace an explicit zero.
const POINTERS: &[(&str, &str)] = &[
    ("DeploymentSpec", "replicas"),
    ("DeploymentSpec", "revisionHistoryLimit"),
    ("DeploymentSpec", "progressDeadlineSeconds"),
    ("ReplicaSetSpec", "replicas"),
    ("StatefulSetSpec", "replicas"),
    ("StatefulSetSpec", "revisionHistoryLimit"),
    ("DaemonSetSpec", "revisionHistoryLimit"),
    ("PodSpec", "terminationGracePeriodSeconds"),
    ("PodSpec", "activeDeadlineSeconds"),
    ("PodSpec", "automountServiceAccountToken"),
    ("PodSpec", "shareProcessNamespace"),
    ("PodSpec", "priority"),
    ("PodSpec", "enableServiceLinks"),
    ("PodSpec", "setHostnameAsFQDN"),
    ("PodSpec", "hostUsers"),
    ("ServiceAccount", "automountServiceAccountToken"),
    ("PodSecurityContext", "runAsUser"),
    ("PodSecurityContext", "runAsGroup"),
    ("PodSecurityContext", "runAsNonRoot"),
    ("PodSecurityContext", "fsGroup"),
    ("SecurityContext", "runAsUser"),
    ("SecurityContext", "runAsGroup"),
    ("SecurityContext", "runAsNonRoot"),
    ("SecurityContext", "privileged"),
    ("SecurityContext", "readOnlyRootFilesystem"),
    ("SecurityContext", "allowPrivilegeEscalation"),
    ("Probe", "terminationGracePeriodSeconds"),
    ("ConfigMap", "immutable"),
    ("Secret", "immutable"),
    ("ConfigMapVolumeSource", "defaultMode"),
    ("ConfigMapVolumeSource", "optional"),
    ("SecretVolumeSource", "defaultMode"),
    ("SecretVolumeSource", "optional"),
    ("ProjectedVolumeSource", "defaultMode"),
    ("KeyToPath", "mode"),
    ("ConfigMapKeySelector", "optional"),
    ("SecretKeySelector", "optional"),
    ("ConfigMapEnvSource", "optional"),
    ("SecretEnvSource", "optional"),
    ("ConfigMapProjection", "optional"),
    ("SecretProjection", "optional"),
    ("ServiceSpec", "allocateLoadBalancerNodePorts"),
    ("ServicePort", "appProtocol"),
    ("ObjectMeta", "deletionGracePeriodSeconds"),
    ("OwnerReference", "controller"),
    ("OwnerReference", "blockOwnerDeletion"),
    ("EndpointConditions", "ready"),
    ("EndpointConditions", "serving"),
    ("EndpointConditions", "terminating"),
    ("EndpointPort", "port"),
    ("EndpointPort", "name"),
    ("LeaseSpec", "holderIdentity"),
    ("LeaseSpec", "leaseDurationSeconds"),
    ("LeaseSpec", "leaseTransitions"),
    ("ContainerStatus", "started"),
    ("PriorityClass", "preemptionPolicy"),
];

/// Whether a zero value of this field is kept (see `POINTERS`).
pub(super) fn keeps_zero(message: &Message, field: &Field) -> bool {
    POINTERS.iter().any(|(m, f)| *m == message.short_name() && *f == field.json)
}
