//! Faultline reports: the HTML report of a run, the run index and regression
//! compare. Empty until the reports issue lands.
