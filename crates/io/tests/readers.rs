//! Property tests of the file readers (issue 20): a valid .npy or IDX file with random
//! truncations and header edits is either an error or a correct read (values that the file
//! holds, in a shape they fill), never a panic, an abort or a shape the data cannot fill.

use gud_io::images::read_idx;
use gud_io::npy::read_array;
use proptest::prelude::*;
use proptest::sample::Index;

fn npy_bytes(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    // a one-element tuple needs its comma: (4,)
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    values
        .iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    bytes
}

fn idx_bytes(dims: &[u32], values: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    dims.iter()
        .for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
    b.extend_from_slice(values);
    b
}

/// Characters that matter in a header: digits, separators, the bytes of large numbers.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        (b'0'..=b'9'),
        Just(b','),
        Just(b'('),
        Just(b')'),
        Just(b' '),
        Just(b'\''),
        Just(b'-'),
        Just(0xff),
        Just(0x00),
        any::<u8>(),
    ]
}

/// Applies `edits` inside the first `span` bytes, then keeps `keep` of the result (all when
/// `keep` is None).
fn mutate(mut b: Vec<u8>, span: usize, edits: &[(Index, u8)], keep: Option<Index>) -> Vec<u8> {
    let span = span.min(b.len());
    for (at, v) in edits {
        let i = at.index(span);
        b[i] = *v;
    }
    if let Some(k) = keep {
        b.truncate(k.index(b.len() + 1));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn npy_reader_errs_or_reads_what_the_file_holds(
        shape in prop::collection::vec(1usize..5, 1..5),
        edits in prop::collection::vec((any::<Index>(), header_byte()), 0..4),
        keep in prop::option::of(any::<Index>()),
    ) {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|i| i as f64 * 0.25 - 1.0).collect();
        let original = npy_bytes(&shape, &values);
        let bytes = mutate(original.clone(), 128, &edits, keep);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(arr) = read_array(&path) {
            let count: usize = arr.shape.iter().product();
            prop_assert_eq!(arr.data.len(), count);
            // the values read are bytes the file holds after its header
            prop_assert!(4 * count <= bytes.len());
            if bytes == original {
                prop_assert_eq!(&arr.shape, &shape);
                prop_assert_eq!(&arr.data, &values);
            }
        } else {
            prop_assert!(bytes != original, "the unmodified file must read");
        }
    }

    #[test]
    fn idx_reader_errs_or_reads_what_the_file_holds(
        dims in prop::collection::vec(1u32..6, 1..4),
        edits in prop::collection::vec((any::<Index>(), header_byte()), 0..4),
        keep in prop::option::of(any::<Index>()),
    ) {
        let n: usize = dims.iter().map(|&d| d as usize).product();
        let values: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        let original = idx_bytes(&dims, &values);
        let bytes = mutate(original.clone(), 4 + 4 * dims.len(), &edits, keep);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        std::fs::write(&path, &bytes).unwrap();
        match read_idx(&path) {
            Ok((got_dims, got)) => {
                let count: usize = got_dims.iter().product();
                prop_assert_eq!(got.len(), count);
                prop_assert!(count <= bytes.len());
                if bytes == original {
                    prop_assert_eq!(got, values);
                }
            }
            Err(e) => {
                prop_assert!(bytes != original, "the unmodified file must read");
                prop_assert!(e.to_string().contains("x.idx"), "{}", e);
            }
        }
    }
}
