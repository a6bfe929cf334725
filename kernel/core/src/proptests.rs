//! Property tests of the pieces that take arbitrary input from services.

use crate::guest::GuestSlice;
use crate::ipc::{CallTable, Endpoint, Message, PendingCall};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use atoll_abi::Error;
use proptest::prelude::*;

proptest! {
    /// Any (ptr, len) against any memory: accepted exactly when it lies inside
    /// and within the limit, and then it is exactly that window. Never panics.
    #[test]
    fn guest_slices_are_checked_exactly(ptr: i32, len: i32, size in 0usize..4096, limit in 0usize..8192) {
        let memory: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let (start, length) = (ptr as u32 as usize, len as u32 as usize);
        let result = GuestSlice::new(ptr, len).read(&memory, limit);
        if length > limit {
            prop_assert_eq!(result, Err(Error::TooLarge));
        } else if start + length > size {
            prop_assert_eq!(result, Err(Error::OutOfBounds));
        } else {
            prop_assert_eq!(result, Ok(&memory[start..start + length]));
        }
    }

    /// An endpoint behaves as a bounded FIFO: same answers as a model queue.
    #[test]
    fn endpoints_are_bounded_fifos(depth in 1usize..8, operations in proptest::collection::vec(any::<Option<u8>>(), 0..64)) {
        let mut endpoint = Endpoint::new("e".into(), Some(0), depth);
        let mut model: VecDeque<u8> = VecDeque::new();
        for operation in operations {
            match operation {
                Some(byte) => {
                    let result = endpoint.push(Message { sender: 1, data: vec![byte], token: 0 });
                    if model.len() < depth {
                        prop_assert!(result.is_ok());
                        model.push_back(byte);
                    } else {
                        prop_assert_eq!(result.map_err(|(error, _)| error), Err(Error::QueueFull));
                    }
                }
                None => prop_assert_eq!(endpoint.pop().map(|m| m.data[0]), model.pop_front()),
            }
            prop_assert_eq!(endpoint.len(), model.len());
        }
    }

    /// Live tokens are distinct and name their call; ended tokens name nothing,
    /// even after their slot is reused.
    #[test]
    fn tokens_name_exactly_their_call(operations in proptest::collection::vec(any::<(bool, u8)>(), 0..128)) {
        let mut calls = CallTable::default();
        let mut live: Vec<(u32, usize)> = Vec::new();
        let mut dead: Vec<u32> = Vec::new();
        for (index, (insert, pick)) in operations.into_iter().enumerate() {
            if insert || live.is_empty() {
                let call = PendingCall { caller: index, server: 0, reply: GuestSlice::new(0, 0), received: false };
                let token = calls.insert(call).unwrap();
                prop_assert!(token != 0);
                prop_assert!(live.iter().all(|(other, _)| *other != token));
                live.push((token, index));
            } else {
                let (token, caller) = live.remove(pick as usize % live.len());
                prop_assert_eq!(calls.remove(token).map(|call| call.caller), Some(caller));
                dead.push(token);
            }
            for (token, caller) in &live {
                prop_assert_eq!(calls.get(*token).map(|call| call.caller), Some(*caller));
            }
            for token in &dead {
                if live.iter().all(|(other, _)| other != token) {
                    prop_assert!(calls.get(*token).is_none());
                }
            }
        }
    }
}
