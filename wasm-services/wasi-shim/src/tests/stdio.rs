//! The process-wide functions: arguments, clocks, random, stdout and
//! stderr through `print`, stdin from the console or the platform,
//! `poll_oneoff` on clocks, `sched_yield`, and the stubs.

use super::fake_fs::FakeFs;
use super::*;
use atoll_abi::wasi::FUNCTIONS;
use std::collections::VecDeque;

fn plain() -> Program {
    program(vec![], vec![], FakeFs::new())
}

#[test]
fn arguments_and_environment_are_the_startup_records() {
    let mut program = plain();
    assert_eq!(program.args_sizes_get(OUT as i32, OUT as i32 + 4), 0);
    assert_eq!((program.u32_at(OUT), program.u32_at(OUT + 4)), (2, 8));
    assert_eq!(program.args_get(PATH as i32, BUFFER as i32), 0);
    assert_eq!(program.u32_at(PATH), BUFFER);
    assert_eq!(program.u32_at(PATH + 4), BUFFER + 5);
    assert_eq!(program.bytes(BUFFER, 8), b"prog\0-v\0");
    assert_eq!(program.environ_sizes_get(OUT as i32, OUT as i32 + 4), 0);
    assert_eq!((program.u32_at(OUT), program.u32_at(OUT + 4)), (1, 7));
    assert_eq!(program.environ_get(PATH as i32, BUFFER as i32), 0);
    assert_eq!(program.bytes(BUFFER, 7), b"HOME=/\0");
    assert_eq!(
        program.args_get(PATH as i32, MEMORY as i32 - 4),
        errno::FAULT
    );
    assert_eq!(program.args_sizes_get(-1, OUT as i32), errno::FAULT);
}

#[test]
fn clocks_are_the_kernels_time_and_the_wall_clock_at_boot() {
    let mut program = plain();
    assert_eq!(program.clock_time_get(1, 0, OUT as i32), 0);
    assert_eq!(program.u64_at(OUT), 5_000_000_000);
    assert_eq!(program.clock_time_get(0, 0, OUT as i32), 0);
    assert_eq!(program.u64_at(OUT), 1_700_000_005_000_000_000);
    assert_eq!(program.clock_res_get(0, OUT as i32), 0);
    assert_eq!(program.u64_at(OUT), 1);
    assert_eq!(program.clock_time_get(2, 0, OUT as i32), errno::NOTSUP);
    assert_eq!(program.clock_res_get(3, OUT as i32), errno::NOTSUP);
    assert_eq!(program.clock_time_get(4, 0, OUT as i32), errno::INVAL);
    assert_eq!(program.clock_time_get(1, 0, -4), errno::FAULT);
}

#[test]
fn random_bytes_follow_the_seeded_generator() {
    let mut program = plain();
    assert_eq!(program.random_get(BUFFER as i32, 1000), 0);
    let first = program.bytes(BUFFER, 1000);
    // The kernel's xorshift64*, seeded with 42: word by word.
    let mut state = 42u64;
    let mut expected = Vec::new();
    let step = |mut state: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    while expected.len() < 1000 {
        state = step(state);
        expected.extend_from_slice(&state.to_le_bytes());
    }
    expected.truncate(1000);
    assert_eq!(first, expected);
    // A bad buffer moves nothing, not even the generator.
    assert_eq!(program.random_get(MEMORY as i32 - 10, 11), errno::FAULT);
    assert_eq!(program.random_get(BUFFER as i32, 8), 0);
    assert_eq!(program.u64_at(BUFFER), step(state));
}

#[test]
fn stdout_and_stderr_go_to_print_at_most_4_kib_at_a_time() {
    let mut program = plain();
    assert_eq!(program.write(1, b"hello\n"), Ok(6));
    assert_eq!(program.write(2, b"oops"), Ok(4));
    assert_eq!(
        program.kernel.printed,
        [(1, b"hello\n".to_vec()), (2, b"oops".to_vec())]
    );
    // Two iovecs gathered; more than 4 KiB is a short write.
    let mut record = BUFFER.to_le_bytes().to_vec();
    record.extend_from_slice(&3000u32.to_le_bytes());
    record.extend_from_slice(&BUFFER.to_le_bytes());
    record.extend_from_slice(&3000u32.to_le_bytes());
    // A third, outside memory: never looked at, the write being full.
    record.extend_from_slice(&u32::MAX.to_le_bytes());
    record.extend_from_slice(&8u32.to_le_bytes());
    program.put(IOVECS, &record);
    assert_eq!(program.fd_write(1, IOVECS as i32, 3, OUT as i32), 0);
    assert_eq!(program.u32_at(OUT), 4096);
    assert_eq!(program.kernel.printed[2].1.len(), 4096);
    // Errors.
    assert_eq!(program.write(0, b"x"), Err(errno::BADF));
    assert_eq!(program.write(-5, b"x"), Err(errno::BADF));
    assert_eq!(
        program.fd_write(1, IOVECS as i32, 1025, OUT as i32),
        errno::INVAL
    );
    assert_eq!(program.fd_write(1, IOVECS as i32, 1, -1), errno::FAULT);
    assert_eq!(
        program.kernel.printed.len(),
        3,
        "nothing printed on an error"
    );
    let (filetype, _, rights) = program.fdstat(1).unwrap();
    assert_eq!((filetype, rights), (2, (1 << 6) | (1 << 27)));
}

#[test]
fn stdin_reads_the_console_when_the_service_uses_it() {
    let mut program = plain();
    program.kernel.console = Some(VecDeque::from([
        console::Response::Input(b"yes\r".to_vec()),
        console::Response::Busy,
        console::Response::Done,
    ]));
    // The first non-empty iovec is filled; `\r` becomes `\n`.
    let mut record = BUFFER.to_le_bytes().to_vec();
    record.extend_from_slice(&0u32.to_le_bytes());
    record.extend_from_slice(&BUFFER.to_le_bytes());
    record.extend_from_slice(&100_000u32.to_le_bytes());
    program.put(IOVECS, &record);
    assert_eq!(program.fd_read(0, IOVECS as i32, 2, OUT as i32), 0);
    assert_eq!(program.u32_at(OUT), 4);
    assert_eq!(program.bytes(BUFFER, 4), b"yes\n");
    assert_eq!(program.kernel.console_reads, [3072], "one message's worth");
    assert_eq!(program.read(0, 10), Err(errno::AGAIN), "another reader");
    assert_eq!(program.read(0, 10), Err(errno::IO), "out of protocol");
    assert_eq!(program.read(0, 10), Err(errno::IO), "the console is gone");
    assert_eq!(program.read(0, 0).unwrap(), b"", "nothing to fill");
    assert_eq!(program.read(1, 10), Err(errno::BADF));
    assert_eq!(
        program.fd_read(0, IOVECS as i32, 1025, OUT as i32),
        errno::INVAL
    );
}

#[test]
fn stdin_without_a_console_is_the_platforms() {
    let mut program = plain();
    program.kernel.stdin = b"typed ahead".to_vec();
    assert_eq!(program.read(0, 5).unwrap(), b"typed");
    assert_eq!(program.read(0, 100).unwrap(), b" ahead");
    assert_eq!(program.read(0, 100).unwrap(), b"", "its end");
    assert_eq!(program.fd_read(0, IOVECS as i32, 1, -1), errno::FAULT);
}

#[test]
fn poll_on_clocks_sleeps_until_the_soonest() {
    let mut program = plain();
    let mut records = Vec::new();
    for (userdata, id, timeout, flags) in [
        (1u64, 1u32, 3_000_000u64, 0u16),
        (2, 1, 9_000_000, 0),
        // Absolute on the realtime clock, at the same time as the first.
        (3, 0, 1_700_000_005_003_000_000, 1),
    ] {
        let mut record = [0u8; 48];
        record[0..8].copy_from_slice(&userdata.to_le_bytes());
        record[16..20].copy_from_slice(&id.to_le_bytes());
        record[24..32].copy_from_slice(&timeout.to_le_bytes());
        record[40..42].copy_from_slice(&flags.to_le_bytes());
        records.extend_from_slice(&record);
    }
    program.put(0x2000, &records);
    assert_eq!(program.poll_oneoff(0x2000, EVENTS as i32, 3, OUT as i32), 0);
    assert_eq!(program.kernel.slept, [3_000_000]);
    assert_eq!(program.u32_at(OUT), 2);
    assert_eq!(
        (program.u64_at(EVENTS), program.u64_at(EVENTS + 32)),
        (1, 3)
    );
    // An unknown clock is reported at once, with no sleep.
    records[16] = 7;
    program.put(0x2000, &records);
    assert_eq!(program.poll_oneoff(0x2000, EVENTS as i32, 1, OUT as i32), 0);
    assert_eq!(program.u32_at(OUT), 1);
    assert_eq!(program.bytes(EVENTS + 8, 3), [errno::INVAL as u8, 0, 0]);
    assert_eq!(program.kernel.slept.len(), 1);
    // Bad counts, tags and arrays.
    assert_eq!(
        program.poll_oneoff(0x2000, EVENTS as i32, 0, OUT as i32),
        errno::INVAL
    );
    assert_eq!(
        program.poll_oneoff(0x2000, EVENTS as i32, 1025, OUT as i32),
        errno::INVAL
    );
    assert_eq!(
        program.poll_oneoff(0x2000, MEMORY as i32 - 32, 2, OUT as i32),
        errno::FAULT
    );
    records[8] = 3;
    program.put(0x2000, &records);
    assert_eq!(
        program.poll_oneoff(0x2000, EVENTS as i32, 1, OUT as i32),
        errno::INVAL
    );
    // A descriptor not open is an event with EBADF.
    records[8] = 1;
    records[16..20].copy_from_slice(&9u32.to_le_bytes());
    program.put(0x2000, &records);
    assert_eq!(program.poll_oneoff(0x2000, EVENTS as i32, 1, OUT as i32), 0);
    assert_eq!(program.bytes(EVENTS + 8, 3), [errno::BADF as u8, 0, 1]);
    assert_eq!(program.sched_yield(), 0);
    assert_eq!(program.kernel.slept, [3_000_000, 0]);
}

#[test]
fn stubs_answer_enosys_or_ebadf_and_log_once() {
    let mut program = program(preopens(), vec![], FakeFs::new());
    assert_eq!(program.stub("fd_advise", Some(1)), errno::NOSYS);
    assert_eq!(program.stub("fd_advise", Some(3)), errno::NOSYS, "open");
    assert_eq!(program.stub("fd_advise", Some(9)), errno::BADF);
    assert_eq!(program.stub("path_symlink", Some(-1)), errno::BADF);
    assert_eq!(program.stub("proc_raise", None), errno::NOSYS);
    assert_eq!(
        program.kernel.logs,
        [
            "WASI fd_advise is not supported, returned ENOSYS",
            "WASI path_symlink is not supported, returned EBADF",
            "WASI proc_raise is not supported, returned ENOSYS",
        ]
    );
    // Every stub of the table has a bit of its own.
    let stubs: Vec<_> = FUNCTIONS
        .iter()
        .filter(|function| !matches!(function.support, atoll_abi::wasi::Support::Implemented))
        .collect();
    assert_eq!(stubs.len(), 9);
    for function in stubs {
        program.stub(function.name, None);
    }
    assert_eq!(program.kernel.logs.len(), 9);
}
