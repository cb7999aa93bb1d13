//! The GPU cluster simulator: a product component that implements the cluster contract
//! (`openapi/cluster.yaml`) with time compression, deterministic runs, injectable faults and
//! real PEFT artifacts. `model` is the run as a pure function of cluster time; `artifacts`
//! writes the files a finished run produces.

pub mod artifacts;
pub mod model;
pub mod server;
