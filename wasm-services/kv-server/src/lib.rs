//! kv-server: a key-value store of 64-bit counters on the `kv` endpoint.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use atoll_protocols::kv::{ENDPOINT, Error, MAX_KEY_LEN, Request, Response};

/// The most keys the store holds.
const MAX_KEYS: usize = 1024;

atoll_sdk::entry!(main);

fn main() {
    let mut store: BTreeMap<String, i64> = BTreeMap::new();
    atoll_sdk::serve_named(ENDPOINT, |request: Request| handle(&mut store, request));
}

fn handle(store: &mut BTreeMap<String, i64>, request: Request) -> Response {
    let room = |store: &BTreeMap<String, i64>, key: &String| {
        if key.len() > MAX_KEY_LEN {
            Err(Error::KeyTooLong)
        } else if store.len() >= MAX_KEYS && !store.contains_key(key) {
            Err(Error::Full)
        } else {
            Ok(())
        }
    };
    match request {
        Request::Get { key } => Response::Value(store.get(&key).copied()),
        Request::Put { key, value } => match room(store, &key) {
            Ok(()) => Response::Value(store.insert(key, value)),
            Err(error) => Response::Error(error),
        },
        Request::Add { key, delta } => match room(store, &key) {
            Ok(()) => {
                let value = store.entry(key).or_insert(0);
                *value = value.wrapping_add(delta);
                Response::Value(Some(*value))
            }
            Err(error) => Response::Error(error),
        },
        Request::Remove { key } => Response::Value(store.remove(&key)),
        Request::Len => Response::Len(store.len() as u32),
    }
}
