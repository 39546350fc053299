//! Asks a PKCS#11 token, independently of Keyward, what it reveals about each private key:
//! `p11probe MODULE TOKEN_LABEL PIN` prints a JSON array, one entry per private key, with the
//! token's answer for `CKA_VALUE` and `CKA_PRIVATE_EXPONENT` and the key's protection flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use serde_json::{Value, json};

fn info(i: Option<&AttributeInfo>) -> Value {
    match i {
        Some(AttributeInfo::Sensitive) => json!("sensitive"),
        Some(AttributeInfo::Available(n)) => json!(format!("available({n})")),
        Some(AttributeInfo::TypeInvalid) => json!("type_invalid"),
        Some(AttributeInfo::Unavailable) => json!("unavailable"),
        None => json!("missing"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, label, pin] = args.as_slice() else {
        eprintln!("usage: p11probe MODULE TOKEN_LABEL PIN");
        std::process::exit(2);
    };
    let ctx = Pkcs11::new(module).expect("load module");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("initialize");
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .expect("token");
    let session = ctx.open_ro_session(slot).unwrap();
    session
        .login(UserType::User, Some(&pin.as_str().into()))
        .expect("login");
    let mut out = Vec::new();
    for key in session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap()
    {
        let secret = session
            .get_attribute_info_map(key, &[AttributeType::Value, AttributeType::PrivateExponent])
            .unwrap();
        // Asking for the values themselves: the token leaves them out.
        let values = session
            .get_attributes(key, &[AttributeType::Value, AttributeType::PrivateExponent])
            .unwrap();
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Label,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sign,
                    AttributeType::Decrypt,
                ],
            )
            .unwrap();
        let mut entry = json!({
            "value": info(secret.get(&AttributeType::Value)),
            "private_exponent": info(secret.get(&AttributeType::PrivateExponent)),
            "values_returned": values.len(),
        });
        for a in attrs {
            let (k, v) = match a {
                Attribute::Label(l) => ("label", json!(String::from_utf8_lossy(&l))),
                Attribute::Sensitive(b) => ("sensitive", json!(b)),
                Attribute::Extractable(b) => ("extractable", json!(b)),
                Attribute::NeverExtractable(b) => ("never_extractable", json!(b)),
                Attribute::Token(b) => ("token", json!(b)),
                Attribute::Private(b) => ("private", json!(b)),
                Attribute::Sign(b) => ("sign", json!(b)),
                Attribute::Decrypt(b) => ("decrypt", json!(b)),
                _ => continue,
            };
            entry[k] = v;
        }
        out.push(entry);
    }
    println!("{}", Value::Array(out));
}
