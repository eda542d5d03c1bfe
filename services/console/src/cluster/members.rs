//! Kafka's own view of a consumer group: its state and members (DescribeGroups through
//! librdkafka's group list), with each member's assigned partitions decoded from the consumer
//! protocol's assignment bytes.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use serde::Serialize;

/// One member of a group, as the group coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub member_id: String,
    /// The static instance id (`group.instance.id`), when the member id carries one.
    pub instance: Option<String>,
    pub client_id: String,
    pub host: String,
    /// `<topic>:<partition>` strings.
    pub partitions: Vec<String>,
}

/// A group's state and members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupDescription {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`, or `Unknown` when
    /// the coordinator does not know the group.
    pub state: String,
    pub members: Vec<Member>,
}

/// Describes every group on the cluster in one call; keyed by group id.
pub fn describe_all(
    client: &BaseConsumer,
    timeout: Duration,
) -> Result<HashMap<String, GroupDescription>, KafkaError> {
    let list = client.fetch_group_list(None, timeout)?;
    Ok(list
        .groups()
        .iter()
        .map(|g| {
            let members = g
                .members()
                .iter()
                .map(|m| Member {
                    member_id: m.id().to_string(),
                    instance: None,
                    client_id: m.client_id().to_string(),
                    host: m.client_host().trim_start_matches('/').to_string(),
                    partitions: m.assignment().map(decode_assignment).unwrap_or_default(),
                })
                .collect();
            (
                g.name().to_string(),
                GroupDescription {
                    state: g.state().to_string(),
                    members,
                },
            )
        })
        .collect())
}

/// Fills in each member's static instance id: a static member's id is
/// `<group.instance.id>-<uuid>`, so the id minus its trailing uuid names the instance when a
/// heartbeat with that instance exists.
pub fn match_instances(members: &mut [Member], known_instances: &[String]) {
    for member in members {
        member.instance = known_instances
            .iter()
            .find(|i| {
                member
                    .member_id
                    .strip_prefix(i.as_str())
                    .is_some_and(|rest| rest.starts_with('-') && rest.len() == 37)
            })
            .cloned();
    }
}

/// Decodes a consumer protocol assignment (any version): int16 version, then an array of
/// (string topic, array of int32 partitions), then user data. Malformed bytes give what was
/// read before the fault.
pub fn decode_assignment(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader { bytes, at: 0 };
    let decoded = (|| {
        r.i16()?;
        let topics = r.i32()?;
        for _ in 0..topics.max(0) {
            let len = r.i16()?;
            let topic = String::from_utf8_lossy(r.take(len.max(0) as usize)?).into_owned();
            let partitions = r.i32()?;
            for _ in 0..partitions.max(0) {
                out.push(format!("{topic}:{}", r.i32()?));
            }
        }
        Some(())
    })();
    let _ = decoded;
    out.sort();
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn an_assignment_decodes_to_topic_partitions() {
        let bytes = assignment(&[("payments.critical", &[0, 3]), ("payments.retry.1s", &[1])]);
        assert_eq!(
            decode_assignment(&bytes),
            [
                "payments.critical:0",
                "payments.critical:3",
                "payments.retry.1s:1"
            ]
        );
        assert!(decode_assignment(&[]).is_empty());
        // Truncated: what was read before the cut.
        let cut = &bytes[..bytes.len() - 10];
        assert_eq!(
            decode_assignment(cut),
            ["payments.critical:0", "payments.critical:3"]
        );
    }

    #[test]
    fn static_members_are_matched_to_their_instance() {
        let mut members = vec![
            Member {
                member_id: "payments-0-3f2b8c1e-8a5d-4e43-9a8e-0c5f1d2e3a4b".into(),
                instance: None,
                client_id: "c".into(),
                host: "h".into(),
                partitions: vec![],
            },
            Member {
                member_id: "rdkafka-3f2b8c1e-8a5d-4e43-9a8e-0c5f1d2e3a4b".into(),
                instance: None,
                client_id: "c".into(),
                host: "h".into(),
                partitions: vec![],
            },
        ];
        match_instances(&mut members, &["payments-0".into(), "payments-1".into()]);
        assert_eq!(members[0].instance.as_deref(), Some("payments-0"));
        assert_eq!(members[1].instance, None);
    }
}
