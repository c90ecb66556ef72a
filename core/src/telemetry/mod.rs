//! Telemetry data: events, exact counters, histograms. TODO(telemetry helper).
