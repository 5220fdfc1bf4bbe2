//! Step 1 of the checklist, **check the data**.
//!
//! Shows whether a dataset's labels can be learned before any training: a t-SNE map of the data
//! coloured by label, the per-label mean images with their pixel value ranges, and a measured
//! verdict on separability (k-NN label accuracy in the map and in PCA space, silhouettes, the
//! confusable label pairs, candidate label errors). Built on `model-core`'s datasets; speaks its
//! findings and verdicts. The step's functions arrive with its own issue.
