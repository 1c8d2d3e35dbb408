//! The HTTP API's view of a tenant's staff (`GET /api/v1/agents`).

use super::{Router, User};

impl Router {
    /// The HTTP API's list of a tenant's agents and bots (of `group`, or all), by
    /// user id: `{"agents":[{user, name, role, groups, presence, connections,
    /// assigned, capacity}]}` (`proto-spec/openapi.yaml`, `Agents`). Staff the
    /// router still remembers without a connection (they serve conversations within
    /// their grace) are `offline`.
    pub fn agents_json(&self, tenant: &str, group: &str) -> bytes::Bytes {
        let mut agents: Vec<(&str, &User)> = self
            .tenants
            .get(tenant)
            .map(|t| {
                t.users
                    .iter()
                    .filter(|(_, u)| u.is_staff())
                    .filter(|(_, u)| group.is_empty() || u.groups.iter().any(|g| g == group))
                    .map(|(id, u)| (&**id, &**u))
                    .collect()
            })
            .unwrap_or_default();
        agents.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let items: Vec<serde_json::Value> = agents
            .into_iter()
            .map(|(id, u)| {
                let presence = match (u.conns.is_empty(), u.away) {
                    (true, _) => "offline",
                    (false, true) => "away",
                    (false, false) => "online",
                };
                serde_json::json!({
                    "user": id,
                    "name": u.name(id),
                    "role": if u.role == crate::protocol::messages::role::BOT { "bot" } else { "agent" },
                    "groups": u.groups,
                    "presence": presence,
                    "connections": u.conns.len(),
                    "assigned": u.assigned.len(),
                    "capacity": u.capacity,
                })
            })
            .collect();
        let mut body =
            serde_json::to_vec(&serde_json::json!({ "agents": items })).unwrap_or_default();
        body.push(b'\n');
        bytes::Bytes::from(body)
    }
}
