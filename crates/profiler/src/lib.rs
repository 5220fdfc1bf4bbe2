//! Step 3 of the checklist, **check the timings**.
//!
//! Forward and backward time of every layer, the data layer included, ranked bottlenecks with a
//! verdict when training is input-bound, and the data-loading strategies compared on the user's
//! own data (load-all against on-demand-no-cache, with the time saved extrapolated). Built on
//! `model-core`'s Tap; the step's functions arrive with its own issue.
