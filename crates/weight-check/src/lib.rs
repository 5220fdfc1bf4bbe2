//! Step 2 of the checklist, **check the weights**.
//!
//! Proves that imported (transfer-learning) weights really landed in the model, tensor by
//! tensor: applied, missing, unused, mismatched, values read back from the model and compared
//! with the file, and tensors that still look like their initialisation. Shows the weights as
//! pictures (the first convolution's filters as a tile grid, like AlexNet's) and compares two
//! weight sets. Built on `model-core`'s models; the step's functions arrive with its own issue.
