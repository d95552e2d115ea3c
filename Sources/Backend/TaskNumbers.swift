#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Task numbers (`task-N`) are never given twice: not by a gateway that restarted with its tasks
/// in memory, not by a Redis that lost its counter. A counter kept in a process starts at the
/// time, in microseconds since 1970, when the process starts; Redis's counter never goes below the
/// time when a number is taken. So a counter that starts again from nothing starts above every
/// number given before (unless the clock went back, or tasks were submitted faster than one per
/// microsecond for the whole life of the one before).
public enum TaskNumbers {
    /// The least number a task submitted now may have.
    public static func floor(now: Date = Date()) -> Int64 {
        Int64(now.timeIntervalSince1970 * 1_000_000)
    }
}
