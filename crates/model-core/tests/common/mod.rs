//! PyTorch's reference figures for the bundled ResNet-20, shared by the tests that hold a forward
//! to them.

use model_core::bundled;

/// The whole reference file (`reference_resnet20.json`).
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(bundled::resnet20_reference()).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// PyTorch's exact input: the 20 lossless PNGs, normalised, `[20, 3, 32, 32]`.
pub fn reference_input() -> Vec<f32> {
    let bytes = std::fs::read(bundled::resnet20_reference_input()).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values.len(), 20 * 3 * 32 * 32);
    values
}

/// PyTorch's logits for [`reference_input`], row by row.
pub fn reference_logits() -> Vec<f32> {
    reference()["cifar10"]["resnet20"]["foolbox20_logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The largest absolute difference between `logits` and PyTorch's, printed for the record.
pub fn largest_difference_from_pytorch(logits: &[f32]) -> f32 {
    let expected = reference_logits();
    assert_eq!(logits.len(), expected.len());
    let worst = logits
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("largest difference from PyTorch's logits: {worst:e}");
    worst
}
