//! Online change-point detection (filled in by the detector work).
