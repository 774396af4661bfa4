//! The model's ModelArts `config.json`: the parts modelarts-init uses.
//!
//! Owns: reading both health formats (the older one gives every value as a
//! string, the current one numbers and `check_method`), and refusing what we
//! cannot serve with the path of the offending field. Must not: apply the
//! values; `config` decides what they change.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// What a config.json declares.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub model_algorithm: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub apis: Vec<Api>,
    #[serde(default)]
    pub health: Option<Health>,
}

/// One entry of `apis`.
#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    pub url: String,
    pub method: String,
    /// http, https, ws or wss; https and wss ask for TLS.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The JSON schemas of the API: only checked to be JSON here.
    #[serde(default)]
    #[allow(dead_code)]
    pub request: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub response: Option<serde_json::Value>,
}

/// The `health` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub url: String,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default)]
    pub check_method: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub initial_delay_seconds: Option<u64>,
    /// Read by the platform's prober; here only parsed and checked.
    #[serde(default, deserialize_with = "lenient_u64")]
    #[allow(dead_code)]
    pub timeout_seconds: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub period_seconds: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub failure_threshold: Option<u64>,
}

impl Health {
    /// How long the platform waits for the first healthy answer before it
    /// gives up on the instance: initial delay + threshold x period (the
    /// platform's defaults where a value is missing).
    pub fn patience_seconds(&self) -> u64 {
        // Saturating: the numbers come from the file, any u64.
        self.initial_delay_seconds.unwrap_or(0).saturating_add(
            self.failure_threshold
                .unwrap_or(3)
                .saturating_mul(self.period_seconds.unwrap_or(10)),
        )
    }

    /// How long the platform takes to see a failing instance: threshold x
    /// period + timeout (the platform's defaults where a value is missing:
    /// 3 failures, 10 s apart, 10 s each at most).
    pub fn detection_seconds(&self) -> u64 {
        self.failure_threshold.unwrap_or(3) * self.period_seconds.unwrap_or(10)
            + self.timeout_seconds.unwrap_or(10)
    }
}

/// `health.protocol`, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Ws,
    Wss,
}

fn default_protocol() -> Protocol {
    Protocol::Http
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            "ws" => Ok(Protocol::Ws),
            "wss" => Ok(Protocol::Wss),
            _ => Err(serde::de::Error::custom(format!(
                "unknown protocol {text:?}; expected http, https, ws or wss"
            ))),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        })
    }
}

/// A whole number, given as a number or as a string of digits (the older
/// format writes `"initial_delay_seconds": "30"`).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    let number = match &value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(t)) => t.trim().parse().ok(),
        Some(_) => None,
    };
    number.map(Some).ok_or_else(|| {
        let got = value.map_or_else(String::new, |v| v.to_string());
        serde::de::Error::custom(format!(
            "expected a whole number of 0 or more (or a string of digits), got {got}"
        ))
    })
}

impl ModelConfig {
    /// Reads and validates `path`. Errors name the file and the field path
    /// (e.g. `health.initial_delay_seconds`).
    pub fn load(path: &Path) -> Result<ModelConfig, Error> {
        let fail = |message: String| Error::ConfigFile {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and validates config.json text.
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: ModelConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // A key may hold any character, "\n" included: escaped, so that
            // the error stays one line (found by fuzz/model_config).
            let path = e.path().to_string().escape_debug().to_string();
            let inner = e.into_inner();
            // serde_json appends "at line L column C"; keep it, it helps.
            if path == "." {
                format!("{inner}")
            } else {
                format!("{path}: {inner}")
            }
        })?;
        for (i, api) in config.apis.iter().enumerate() {
            if !api.url.starts_with('/') {
                return Err(format!("apis[{i}].url: {:?} must start with '/'", api.url));
            }
        }
        if let Some(h) = &config.health {
            if !h.url.starts_with('/') {
                return Err(format!("health.url: {:?} must start with '/'", h.url));
            }
            if let Some(m) = &h.check_method {
                if !m.eq_ignore_ascii_case("http") && !m.eq_ignore_ascii_case("exec") {
                    return Err(format!("health.check_method: {m:?} is not HTTP or EXEC"));
                }
            }
        }
        Ok(config)
    }

    /// The field that asks for TLS (`health.protocol` or
    /// `apis[i].protocol` set to https or wss), if one does.
    pub fn wants_tls(&self) -> Option<String> {
        let tls = |p: Protocol| matches!(p, Protocol::Https | Protocol::Wss);
        if let Some(h) = self.health.as_ref().filter(|h| tls(h.protocol)) {
            return Some(format!("health.protocol ({})", h.protocol));
        }
        self.apis.iter().enumerate().find_map(|(i, api)| {
            api.protocol
                .filter(|p| tls(*p))
                .map(|p| format!("apis[{i}].protocol ({p})"))
        })
    }

    /// A human summary for `check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(algorithm) = &self.model_algorithm {
            let kind = self.model_type.as_deref().unwrap_or("no model_type");
            out.push_str(&format!("model: {algorithm} ({kind})\n"));
        }
        for api in &self.apis {
            out.push_str(&format!(
                "api: {} {}\n",
                api.method.to_ascii_uppercase(),
                api.url
            ));
        }
        if let Some(field) = self.wants_tls() {
            out.push_str(&format!(
                "tls: {field} asks for it: modelarts-init terminates TLS on its port (--tls-cert/--tls-key, else self-signed)\n"
            ));
        }
        match &self.health {
            Some(h) => out.push_str(&format!(
                "health: {} {} (patience {} s: initial delay {} s + {} failures x {} s)\n",
                h.protocol,
                h.url,
                h.patience_seconds(),
                h.initial_delay_seconds.unwrap_or(0),
                h.failure_threshold.unwrap_or(3),
                h.period_seconds.unwrap_or(10)
            )),
            None => out.push_str("health: none declared (modelarts-init serves /health)\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_format_with_strings() {
        let c = ModelConfig::parse(
            r#"{"model_algorithm":"x","health":{"url":"/health","protocol":"HTTP",
                "initial_delay_seconds":"30","timeout_seconds":"5"}}"#,
        )
        .unwrap();
        let h = c.health.unwrap();
        assert_eq!(h.initial_delay_seconds, Some(30));
        assert_eq!(h.protocol, Protocol::Http);
        assert_eq!(h.patience_seconds(), 60);
    }

    #[test]
    fn new_format_with_numbers() {
        let c = ModelConfig::parse(
            r#"{"apis":[{"url":"/","method":"post"}],"health":{"check_method":"HTTP","url":"/ping",
                "protocol":"ws","initial_delay_seconds":10,"period_seconds":5,"failure_threshold":2}}"#,
        )
        .unwrap();
        assert_eq!(c.health.as_ref().unwrap().patience_seconds(), 20);
        assert_eq!(c.health.as_ref().unwrap().detection_seconds(), 2 * 5 + 10);
        assert_eq!(c.apis[0].url, "/");
    }

    #[test]
    fn patience_saturates_instead_of_overflowing() {
        let c = ModelConfig::parse(
            r#"{"health":{"url":"/h","initial_delay_seconds":18446744073709551615,
                "period_seconds":4294967296,"failure_threshold":4294967296}}"#,
        )
        .unwrap();
        assert_eq!(c.health.unwrap().patience_seconds(), u64::MAX);
    }

    #[test]
    fn an_error_stays_one_line_whatever_the_keys_hold() {
        // fuzz/model_config's first finding: a key with a newline in the
        // field path of the error.
        let e = ModelConfig::parse("{\"model_algou\\nuH\\nurl\":\n \tn\\n\\n}").unwrap_err();
        assert!(!e.contains('\n'), "{e:?}");
        let e = ModelConfig::parse(r#"{"health":{"url":"/h","a\nb":nope}}"#).unwrap_err();
        assert!(e.starts_with(r"health.a\nb: "), "{e}");
    }

    #[test]
    fn https_or_wss_asks_for_tls() {
        let c = ModelConfig::parse(r#"{"health":{"url":"/h","protocol":"HTTPS"}}"#).unwrap();
        assert_eq!(c.wants_tls().as_deref(), Some("health.protocol (https)"));
        let c = ModelConfig::parse(r#"{"apis":[{"url":"/","method":"post"},{"url":"/ws","method":"get","protocol":"wss"}]}"#).unwrap();
        assert_eq!(c.wants_tls().as_deref(), Some("apis[1].protocol (wss)"));
        let c = ModelConfig::parse(r#"{"health":{"url":"/h","protocol":"ws"}}"#).unwrap();
        assert_eq!(c.wants_tls(), None);
    }

    #[test]
    fn errors_name_the_field() {
        for (bad, shown) in [
            ("true", "true"),
            ("-5", "-5"),
            ("2.5", "2.5"),
            (r#""x""#, r#""x""#),
        ] {
            let e = ModelConfig::parse(&format!(
                r#"{{"health":{{"url":"/h","period_seconds":{bad}}}}}"#
            ))
            .unwrap_err();
            assert!(e.starts_with("health.period_seconds:"), "{e}");
            assert!(
                e.contains(&format!(
                    "expected a whole number of 0 or more (or a string of digits), got {shown}"
                )),
                "{e}"
            );
        }
        let c = ModelConfig::parse(r#"{"health":{"url":"/h","period_seconds":"30"}}"#).unwrap();
        assert_eq!(c.health.unwrap().period_seconds, Some(30));
        let e = ModelConfig::parse(r#"{"health":{"url":"h"}}"#).unwrap_err();
        assert!(e.starts_with("health.url:"), "{e}");
        let e = ModelConfig::parse(r#"{"health":{"url":"/h","protocol":"gopher"}}"#).unwrap_err();
        assert!(e.starts_with("health.protocol:"), "{e}");
        let e = ModelConfig::parse(r#"{"apis":[{"url":"x","method":"get"}]}"#).unwrap_err();
        assert!(e.starts_with("apis[0].url:"), "{e}");
        let e = ModelConfig::parse(r#"{"apis":[{"url":5}]}"#).unwrap_err();
        assert!(e.starts_with("apis[0].url:"), "{e}");
    }
}
