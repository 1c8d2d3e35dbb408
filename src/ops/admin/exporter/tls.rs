//! The TLS families: handshakes and their failures per reactor, and the client
//! listener's certificates (expiry, failed reloads).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{Exporter, counter};
use crate::metrics::tls::TLS_VERSIONS;
use crate::tls::FAILURE_REASONS;

impl Exporter {
    pub(super) fn tls(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut me = enc.encode_descriptor(
            "tls_handshakes",
            "TLS handshakes completed on the client listener, by protocol version.",
            None,
            MetricType::Counter,
        )?;
        for (i, r) in self.0.reactors.iter().enumerate() {
            for (version, c) in TLS_VERSIONS.iter().zip(&r.tls.handshakes) {
                let labels = [("reactor", i.to_string()), ("version", (*version).into())];
                me.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
            }
        }
        let mut me = enc.encode_descriptor(
            "tls_handshake_failures",
            "TLS connections closed because the handshake failed or a record did not decrypt or parse, by reason (no_application_protocol, protocol_version, handshake_failure, bad_record, decode_error, alert_received, unexpected_message, other).",
            None,
            MetricType::Counter,
        )?;
        for (i, r) in self.0.reactors.iter().enumerate() {
            for (reason, c) in FAILURE_REASONS.iter().zip(&r.tls.failures) {
                let labels = [("reactor", i.to_string()), ("reason", (*reason).into())];
                me.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
            }
        }
        let certs = &self.0.certificates;
        let expiry = certs
            .expiry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !expiry.is_empty() {
            let mut me = enc.encode_descriptor(
                "tls_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate of [listeners.client.tls] in force, in Unix seconds, by certificate file.",
                None,
                MetricType::Gauge,
            )?;
            for (name, t) in expiry {
                me.encode_family(&[("name", name)])?.encode_gauge(&t)?;
            }
        }
        counter(
            enc,
            "tls_certificate_reload_failures",
            "Reloads refused because a certificate or key of [listeners.client.tls] could not be used (the certificates in force stayed).",
            certs.reload_failures.get(),
        )
    }
}
