//! test-misbehave: tries every way of abusing IPC it can think of, reports the
//! error each attempt got, then shows that the system still serves it.
#![no_std]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, Error, Timeout, println, raw};

atoll_sdk::entry!(main);

/// An address far past this module's memory (a few pages).
const WILD: usize = 0x7fff_0000;

fn report(what: &str, result: Result<(), Error>) {
    match result {
        Ok(()) => println!("{what}: accepted"),
        Err(error) => println!("{what}: {error:?}"),
    }
}

fn status(code: i32) -> Result<(), Error> {
    if code >= 0 {
        Ok(())
    } else {
        Err(Error::from_code(code).unwrap_or(Error::InvalidArgument))
    }
}

fn main() {
    let Ok(echo) = Endpoint::lookup("echo") else {
        println!("no echo endpoint");
        return;
    };
    report(
        "lookup of an ungranted endpoint",
        Endpoint::lookup("kv").map(|_| ()),
    );
    report(
        "send on a forged handle",
        Endpoint::from_handle(77).send(b"x"),
    );
    report(
        "send on a negative handle",
        Endpoint::from_handle(-3).send(b"x"),
    );
    let mut buffer = [0u8; 64];
    report(
        "receive on a used endpoint",
        echo.receive(&mut buffer, Timeout::Poll).map(|_| ()),
    );
    report("oversized message", echo.send(&[0u8; 5000]));
    // SAFETY: deliberately wild pointers: the kernel must check them against
    // this service's memory and refuse; nothing is written on this side.
    let wild_send = unsafe { raw::send(echo.handle(), WILD as *const u8, 16) };
    report("out-of-bounds message", status(wild_send));
    // SAFETY: as above; the reply buffer lies outside this service's memory.
    let wild_reply = unsafe { raw::call(echo.handle(), buffer.as_ptr(), 4, WILD as *mut u8, 64) };
    report("out-of-bounds reply buffer", status(wild_reply));
    // SAFETY: the message buffer is valid; the token is forged.
    let forged = unsafe { raw::reply(0x0001_0001, buffer.as_ptr(), 4) };
    report("reply with a forged token", status(forged));
    match echo.request::<_, Response>(&Request::Ping(7)) {
        Ok(response) => println!("still served: {response:?}"),
        Err(error) => println!("no longer served: {error}"),
    }
}
