//! Process CPU and memory readings, and the memory the engine holds (filled in by the resources work).
