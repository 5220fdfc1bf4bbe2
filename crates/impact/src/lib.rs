//! Step 5 of the checklist, **understand the results**.
//!
//! Occlusion label impact (a black window slid over the image, and the inverse: a black image
//! showing only the window) and model impact on the dataset's mean image (which label each
//! window drives most). Built on `model-core`'s models and datasets; the step's functions arrive
//! with its own issue.
