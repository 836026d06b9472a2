//! Deserializers of config fields, named in `#[serde(deserialize_with)]`
//! attributes of the sections: [`duration`] and [`lenient`].

/// Duration fields: humantime strings (`"10s"`, `"2m"`, `"1h 30m"`, `"250ms"`).
pub(super) mod duration {
    use std::fmt;
    use std::time::Duration;

    use humantime_serde::re::humantime;
    use serde::Deserializer;
    use serde::de::{self, Visitor};

    struct Human {
        /// Unit of a bare number, if bare numbers are accepted.
        bare: Option<(u64, &'static str)>,
    }

    impl Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.bare {
                Some((_, unit)) => write!(f, "a duration like \"30m\" or a number of {unit}"),
                None => f.write_str("a duration like \"10s\", \"2m\" or \"250ms\""),
            }
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim()).map_err(|e| {
                E::custom(format!(
                    "expected a duration like \"10s\", \"2m\" or \"250ms\", got '{s}' ({e})"
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            match self.bare {
                Some((secs, _)) => Ok(Duration::from_secs(n.saturating_mul(secs))),
                None if n == 0 => Ok(Duration::ZERO),
                None => Err(E::custom(format!(
                    "expected a duration with a unit like \"{n}s\" or \"{n}ms\", got the bare number {n}"
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "expected a duration, got the negative number {n}"
                ))),
            }
        }
    }

    /// A humantime string (a bare `0` is allowed and means zero).
    pub fn human<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human { bare: None })
    }

    /// A humantime string, or a bare number of minutes (the reference
    /// server's `conn_max_lifetime`).
    pub fn minutes_or_human<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human {
            bare: Some((60, "minutes")),
        })
    }
}

/// String-like fields that must survive YAML/env typing: `password: 123456`
/// or `IM_AUTH__JWT_SECRET=12345` arrive as numbers and are taken verbatim.
pub(super) mod lenient {
    use std::fmt;
    use std::path::PathBuf;

    use secrecy::SecretString;
    use serde::Deserializer;
    use serde::de::{self, Visitor};

    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<String, E> {
            Ok(s)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_u128<E: de::Error>(self, n: u128) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_i128<E: de::Error>(self, n: i128) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<String, E> {
            Ok(b.to_string())
        }
        fn visit_char<E: de::Error>(self, c: char) -> Result<String, E> {
            Ok(c.to_string())
        }
    }

    struct OptText;

    impl<'de> Visitor<'de> for OptText {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Ok(Some(string(d)?).filter(|s| !s.is_empty()))
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }

    /// Unset, null and `""` are all `None`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(OptText)
    }

    pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        string(d).map(PathBuf::from)
    }

    pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        opt_string(d).map(|s| s.map(PathBuf::from))
    }

    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        string(d).map(SecretString::from)
    }

    pub fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        opt_string(d).map(|s| s.map(SecretString::from))
    }
}
