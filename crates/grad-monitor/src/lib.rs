//! Step 4 of the checklist, **check the gradients**.
//!
//! The ranges of `data` and `diff` flowing through every layer, each weight's and bias's
//! gradient range held against its value range, exploding (NaN/Inf) and vanishing gradients
//! caught where they start, with a remedy named (learning rate, clipping, per-layer
//! learning-rate multiplier, loss weight). Built on `model-core`'s Tap and trainer; the step's
//! functions arrive with its own issue.
