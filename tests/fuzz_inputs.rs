//! A short, deterministic run of the fuzz targets (fuzz/) on stable, in
//! every test run: each seed in fuzz/seeds/<target>/ (and any corpus that
//! `scripts/fuzz` left in fuzz/corpus/<target>/), then a few hundred
//! mutations of each (bytes flipped, inserted, cut and repeated, with the
//! characters that matter to paths, Liquid and YAML). A target that panics
//! fails the test; one that aborts or runs away ends the test binary.

use std::path::Path;

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "{",
    "}",
    "{{",
    "}}",
    "{%",
    "%}",
    ".",
    "..",
    "[",
    "]",
    "\"",
    "\\",
    "\n",
    ":",
    "-",
    "0",
    "9",
    "999999999",
    "for i in (1..",
    "endfor",
    "| split: ",
    "row.",
    "item.",
    "null",
    "true",
    "spec:",
    "apiVersion: retl.dev/v1alpha1\n",
    "kind: Mapping\n",
    "---\n",
    "&a ",
    "*a",
    "\u{fffd}",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                v.splice(at..at, piece.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(32)).min(v.len());
                let copy: Vec<u8> = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [root.join("seeds").join(target), root.join("corpus").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        out.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
    }
    assert!(!out.is_empty(), "fuzz/seeds/{target}/ has seeds");
    out
}

fn run(target: &str, f: fn(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in inputs(target) {
        f(&seed);
        for _ in 0..300 {
            f(&mutate(&seed, &mut rng));
        }
    }
}

#[test]
fn field_paths() {
    run("field_paths", retl::fuzzing::field_paths);
}

#[test]
fn templates() {
    run("templates", retl::fuzzing::templates);
}

#[test]
fn manifests() {
    run("manifests", retl::fuzzing::manifests);
}
