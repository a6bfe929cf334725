//! test-float-check: floating-point work that must give the same bits every
//! time, while the kernel's timer interrupts it thousands of times.
//!
//! Each round runs an n-body simulation (f64, with square roots) and a
//! Mandelbrot count (f32) from the same inputs, and folds every result into a
//! 64-bit fingerprint. Under the hard-float kernel the interpreter keeps Wasm
//! float values in XMM registers; an interrupt handler that clobbered one
//! without restoring it would change a fingerprint. The service checks that
//! every round matches the first, and prints the fingerprint, which the QEMU
//! test compares with the hosted core's (no interrupts there) bit for bit.
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::println;

atoll_sdk::entry!(main);

const ROUNDS: u32 = 30;
const STEPS: u32 = 2_000;

fn main() {
    let mut first = None;
    for round in 0..ROUNDS {
        let fingerprint = nbody(STEPS) ^ mandelbrot().rotate_left(32);
        match first {
            None => first = Some(fingerprint),
            Some(expected) if expected != fingerprint => {
                println!(
                    "float-check: MISMATCH in round {round}: {fingerprint:#018x}, first round {expected:#018x}"
                );
                return;
            }
            Some(_) => {}
        }
    }
    println!(
        "float-check: {ROUNDS} rounds identical, fingerprint {:#018x}",
        first.unwrap_or(0)
    );
}

#[derive(Clone, Copy)]
struct Body {
    position: [f64; 3],
    velocity: [f64; 3],
    mass: f64,
}

/// Five bodies of the Computer Language Benchmarks Game's n-body, `steps`
/// steps of 0.01; returns the fingerprint of the final state.
fn nbody(steps: u32) -> u64 {
    const SOLAR_MASS: f64 = 4.0 * core::f64::consts::PI * core::f64::consts::PI;
    const DAYS: f64 = 365.24;
    let mut bodies = [
        Body {
            position: [0.0; 3],
            velocity: [0.0; 3],
            mass: SOLAR_MASS,
        },
        Body {
            position: [
                4.841_431_442_464_72,
                -1.160_320_044_027_428_4,
                -0.103_622_044_471_123_1,
            ],
            velocity: [
                0.001_660_076_642_744_037 * DAYS,
                0.007_699_011_184_197_404 * DAYS,
                -0.000_069_046_000_161_257_2 * DAYS,
            ],
            mass: 0.000_954_791_938_424_326_6 * SOLAR_MASS,
        },
        Body {
            position: [
                8.343_366_718_244_58,
                4.124_798_564_124_305,
                -0.403_523_417_114_321_4,
            ],
            velocity: [
                -0.002_767_425_107_268_624 * DAYS,
                0.004_998_528_012_349_172 * DAYS,
                0.000_023_041_729_757_376_4 * DAYS,
            ],
            mass: 0.000_285_885_980_666_130_8 * SOLAR_MASS,
        },
        Body {
            position: [
                12.894_369_562_139_13,
                -15.111_151_401_698_631,
                -0.223_307_578_892_655_7,
            ],
            velocity: [
                0.002_964_601_375_647_616 * DAYS,
                0.002_378_471_739_594_809 * DAYS,
                -0.000_029_658_956_854_023_8 * DAYS,
            ],
            mass: 0.000_043_662_440_433_515_6 * SOLAR_MASS,
        },
        Body {
            position: [
                15.379_697_114_850_917,
                -25.919_314_609_987_964,
                0.179_258_772_950_371_2,
            ],
            velocity: [
                0.002_680_677_724_903_893 * DAYS,
                0.001_628_241_700_382_423 * DAYS,
                -0.000_095_159_225_451_971_6 * DAYS,
            ],
            mass: 0.000_051_513_890_204_661_4 * SOLAR_MASS,
        },
    ];
    let count = bodies.len();
    for _ in 0..steps {
        for i in 0..count {
            for j in (i + 1)..count {
                let (Some(a), Some(b)) = (bodies.get(i).copied(), bodies.get(j).copied()) else {
                    continue;
                };
                let d = [
                    a.position[0] - b.position[0],
                    a.position[1] - b.position[1],
                    a.position[2] - b.position[2],
                ];
                let distance2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                let magnitude = 0.01 / (distance2 * sqrt(distance2));
                for axis in 0..3 {
                    if let Some(body) = bodies.get_mut(i) {
                        body.velocity[axis] -= d[axis] * b.mass * magnitude;
                    }
                    if let Some(body) = bodies.get_mut(j) {
                        body.velocity[axis] += d[axis] * a.mass * magnitude;
                    }
                }
            }
        }
        for body in &mut bodies {
            for axis in 0..3 {
                body.position[axis] += 0.01 * body.velocity[axis];
            }
        }
    }
    bodies.iter().fold(0u64, |fingerprint, body| {
        body.position
            .iter()
            .chain(&body.velocity)
            .fold(fingerprint, |fingerprint, value| {
                fingerprint.rotate_left(7) ^ value.to_bits()
            })
    })
}

/// Square root by Newton's method from a bit-level first guess (`core` has
/// no stable `sqrt` without `std`; the torture test covers `f64.sqrt`).
fn sqrt(value: f64) -> f64 {
    let mut root = f64::from_bits((value.to_bits() >> 1) + (1023u64 << 51));
    for _ in 0..6 {
        root = 0.5 * (root + value / root);
    }
    root
}

/// Iterations of z = z^2 + c over a 48x32 grid, in f32.
fn mandelbrot() -> u64 {
    let mut fingerprint = 0u64;
    for row in 0..32u32 {
        for column in 0..48u32 {
            let c_re = column as f32 / 16.0 - 2.0;
            let c_im = row as f32 / 16.0 - 1.0;
            let (mut re, mut im) = (0.0f32, 0.0f32);
            let mut count = 0u32;
            while count < 100 && re * re + im * im <= 4.0 {
                let next = re * re - im * im + c_re;
                im = 2.0 * re * im + c_im;
                re = next;
                count += 1;
            }
            fingerprint = fingerprint.rotate_left(5) ^ u64::from(count) ^ u64::from(re.to_bits());
        }
    }
    fingerprint
}
