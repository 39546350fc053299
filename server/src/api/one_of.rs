//! Strings whose allowed values the OpenAPI document lists (`enum`), while the handlers go on
//! checking them and naming the allowed values in their 422: `OneOf<Algorithms>` accepts any
//! string when it parses, so a caller who sends another value learns what is allowed, in
//! Keyward's words, instead of poem-openapi's "expect a valid enumeration value". Each list
//! comes from the enum the handler parses into, so the spec cannot drift from the server.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Deref;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::keys::{Algorithm, EcdsaFormat, HashAlg, RsaScheme};

/// A list of allowed values.
pub trait Values: Send + Sync + 'static {
    /// A name for the type in the spec's type names.
    const NAME: &'static str;
    /// The allowed values, in API order.
    fn values() -> Vec<&'static str>;
}

/// A string of the values `V` lists.
pub struct OneOf<V>(String, PhantomData<fn() -> V>);

impl<V> OneOf<V> {
    /// The string as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<V> Deref for OneOf<V> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<V> Clone for OneOf<V> {
    fn clone(&self) -> Self {
        OneOf(self.0.clone(), PhantomData)
    }
}

impl<V> std::fmt::Debug for OneOf<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<V> From<&str> for OneOf<V> {
    fn from(s: &str) -> Self {
        OneOf(s.to_string(), PhantomData)
    }
}

impl<V> serde::Serialize for OneOf<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<V: Values> Type for OneOf<V> {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        format!("string({})", V::NAME).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.enum_items = V::values()
            .into_iter()
            .map(|v| Value::String(v.to_string()))
            .collect();
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl<V: Values> ParseFromJSON for OneOf<V> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(OneOf(s, PhantomData)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<V: Values> ParseFromParameter for OneOf<V> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(OneOf(value.to_string(), PhantomData))
    }
}

impl<V: Values> ToJSON for OneOf<V> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

macro_rules! values {
    ($($(#[$m:meta])* $name:ident = $spec:literal => $values:expr;)+) => {$(
        $(#[$m])*
        pub struct $name;
        impl Values for $name {
            const NAME: &'static str = $spec;
            fn values() -> Vec<&'static str> {
                $values
            }
        }
    )+};
}

values! {
    /// Key algorithms.
    Algorithms = "algorithm" => Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    /// Hash algorithms.
    Hashes = "hash" => HashAlg::ALL.iter().map(|h| h.as_str()).collect();
    /// RSA signature schemes.
    RsaSchemes = "rsa_scheme" => RsaScheme::ALL.iter().map(|s| s.as_str()).collect();
    /// ECDSA signature encodings.
    EcdsaFormats = "ecdsa_format" => EcdsaFormat::ALL.iter().map(|f| f.as_str()).collect();
    /// Purposes a key can be created or imported with.
    Purposes = "purpose" => crate::lifecycle::keys::SUPPORTED_PURPOSES.iter().map(|p| p.as_str()).collect();
    /// Document signature formats.
    DocumentFormats = "document_format" => [crate::documents::sign::Format::Cms, crate::documents::sign::Format::Raw]
        .iter().map(|f| f.as_str()).collect();
    /// Certificate revocation reasons (RFC 5280).
    RevocationReasons = "revocation_reason" => crate::documents::crl::REASONS.iter().map(|(n, _)| *n).collect();
    /// Certificate statuses.
    CertificateStatuses = "certificate_status" => [crate::store::CertStatus::Active, crate::store::CertStatus::Revoked]
        .iter().map(|s| s.as_str()).collect();
    /// Request statuses (`pending` is short for `pending_approval`).
    RequestStatuses = "request_status" => vec![
        "pending", "pending_approval", "approved", "signed", "rejected", "expired", "cancelled", "failed",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_value_is_one_the_handlers_accept() {
        for v in Algorithms::values() {
            assert!(v.parse::<Algorithm>().is_ok(), "{v}");
        }
        for v in Hashes::values() {
            assert!(v.parse::<HashAlg>().is_ok(), "{v}");
        }
        for v in RsaSchemes::values() {
            assert!(v.parse::<RsaScheme>().is_ok(), "{v}");
        }
        for v in EcdsaFormats::values() {
            assert!(v.parse::<EcdsaFormat>().is_ok(), "{v}");
        }
        for v in Purposes::values() {
            assert!(v.parse::<crate::keys::Purpose>().is_ok(), "{v}");
        }
        for v in DocumentFormats::values() {
            assert!(crate::documents::sign::Format::parse(v).is_ok(), "{v}");
        }
        for v in RevocationReasons::values() {
            assert!(crate::documents::crl::parse_reason(v).is_ok(), "{v}");
        }
        for v in CertificateStatuses::values() {
            assert!(crate::store::CertStatus::parse(v).is_some(), "{v}");
        }
        for v in RequestStatuses::values() {
            let v = if v == "pending" {
                "pending_approval"
            } else {
                v
            };
            assert!(
                crate::store::approvals::ApprovalStatus::parse(v).is_ok(),
                "{v}"
            );
        }
    }

    #[test]
    fn the_spec_lists_the_values_and_any_string_still_parses() {
        let MetaSchemaRef::Inline(schema) = OneOf::<Hashes>::schema_ref() else {
            panic!("an inline schema");
        };
        assert_eq!(schema.ty, "string");
        assert_eq!(
            schema.enum_items,
            vec![
                Value::from("sha256"),
                Value::from("sha384"),
                Value::from("sha512")
            ]
        );
        // The handler, not the parser, refuses another value (and names the allowed ones).
        let other = OneOf::<Hashes>::parse_from_json(Some(Value::from("md5"))).expect("parses");
        assert_eq!(other.as_str(), "md5");
        assert!(OneOf::<Hashes>::parse_from_json(Some(Value::from(5))).is_err());
    }
}
