//! Fuzz target: postcard decoding of every message type services and the
//! kernel exchange (atoll-abi, atoll-protocols), the boot bundle, and the
//! host control channel's framing. The first byte picks the type, the rest
//! is decoded; whatever decodes must encode and decode back to itself.
#![forbid(unsafe_code)]

use atoll_abi::{bundle, console, info, supervision};
use atoll_fuzz::Outcome;
use atoll_protocols::{admin, block, echo, fs, kv, net, pci};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::process::ExitCode;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Outcome {
    let Ok(value) = postcard::from_bytes::<T>(bytes) else {
        return "refused";
    };
    let encoded = match postcard::to_allocvec(&value) {
        Ok(encoded) => encoded,
        Err(error) => panic!("{value:?} decoded but does not encode: {error}"),
    };
    match postcard::from_bytes::<T>(&encoded) {
        Ok(again) => assert_eq!(again, value, "decode(encode(x)) != x"),
        Err(error) => panic!("{value:?} encodes to bytes that do not decode: {error}"),
    }
    "decoded"
}

/// A bundle that decodes describes a system that encodes again (unless a
/// preopen or listener names an endpoint its service does not use, which
/// encoding refuses) and decodes back to the same description.
fn bundle_round_trip(bytes: &[u8]) -> Outcome {
    let Ok(decoded) = bundle::decode(bytes) else {
        return "refused";
    };
    let encoded = match bundle::encode(&decoded.bundle) {
        Ok(encoded) => encoded,
        Err(bundle::EncodeError::NotUsed { .. }) => return "refused",
        Err(error) => panic!("a decoded bundle does not encode: {error:?}"),
    };
    match bundle::decode(&encoded) {
        Ok(again) => assert_eq!(
            again.bundle, decoded.bundle,
            "decode(encode(bundle)) != bundle"
        ),
        Err(error) => panic!("an encoded bundle does not decode: {error}"),
    }
    "decoded"
}

fn control_frames(bytes: &[u8]) -> Outcome {
    let mut channel = atoll_core::control::ControlChannel::default();
    // In two pieces, as a serial line may deliver them.
    let half = bytes.len() / 2;
    let mut requests = channel.feed(bytes.get(..half).unwrap_or_default());
    requests.extend(channel.feed(bytes.get(half..).unwrap_or_default()));
    if requests.iter().any(Result::is_ok) {
        "decoded"
    } else {
        "refused"
    }
}

fn target(bytes: &[u8]) -> Outcome {
    let Some((&which, rest)) = bytes.split_first() else {
        return "empty";
    };
    match which % 25 {
        0 => round_trip::<echo::Request>(rest),
        1 => round_trip::<echo::Response>(rest),
        2 => round_trip::<kv::Request>(rest),
        3 => round_trip::<kv::Response>(rest),
        4 => round_trip::<block::Request>(rest),
        5 => round_trip::<block::Response>(rest),
        6 => round_trip::<fs::Request>(rest),
        7 => round_trip::<fs::Response>(rest),
        8 => round_trip::<pci::Request>(rest),
        9 => round_trip::<pci::Response>(rest),
        10 => round_trip::<admin::Request>(rest),
        11 => round_trip::<admin::Response>(rest),
        12 => round_trip::<console::Request>(rest),
        13 => round_trip::<console::Response>(rest),
        14 => round_trip::<supervision::Event>(rest),
        15 => round_trip::<info::SystemInfo>(rest),
        16 => round_trip::<info::ServiceInfo>(rest),
        17 => round_trip::<supervision::RestartPolicy>(rest),
        18 => round_trip::<bundle::ServiceLimits>(rest),
        19 => bundle_round_trip(rest),
        20 => control_frames(rest),
        // The network's messages: the driver's link reports (`Link::Frames`
        // batches among them) arrive inside `net::Request`.
        21 => round_trip::<net::Request>(rest),
        22 => round_trip::<net::Response>(rest),
        23 => round_trip::<net::nic::Request>(rest),
        _ => round_trip::<net::Link>(rest),
    }
}

fn main() -> ExitCode {
    atoll_fuzz::run("protocols", 512, target)
}
