import Backend
import Foundation
import Testing
import Workflows

@Suite("Cron schedules")
struct CronTests {
    func at(_ text: String) -> Timestamp {
        let date = try! Date(text, strategy: .iso8601)
        return Timestamp(millisecondsSinceEpoch: Int64(date.timeIntervalSince1970 * 1_000))
    }

    func next(_ cron: String, _ zone: String, after text: String) throws -> String? {
        let schedule = try CronSchedule(cron: cron, timeZone: zone)
        return schedule.nextFire(after: at(text)).map { $0.iso8601 }
    }

    func syntaxError(_ cron: String) -> CronSyntaxError? {
        do {
            _ = try CronExpression(parsing: cron)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyFifteenMinutesInUTC() throws {
        #expect(try next("*/15 * * * *", "UTC", after: "2026-01-05T10:07:30Z") == "2026-01-05T10:15:00.000Z")
        #expect(try next("*/15 * * * *", "UTC", after: "2026-01-05T10:15:00Z") == "2026-01-05T10:30:00.000Z")
    }

    @Test func weekdayNamesAndRanges() throws {
        // Friday 27 March 2026 after 09:00 → Monday 30 March, which is in BST (UTC+1).
        #expect(try next("0 9 * * MON-FRI", "Europe/London", after: "2026-03-27T12:00:00Z") == "2026-03-30T08:00:00.000Z")
        #expect(try next("30 16 * JAN,jul *", "UTC", after: "2026-02-01T00:00:00Z") == "2026-07-01T16:30:00.000Z")
        #expect(try next("0 0 1-7/3 * *", "UTC", after: "2026-05-01T00:00:00Z") == "2026-05-04T00:00:00.000Z")
        #expect(try next("0 12 * * 7", "UTC", after: "2026-05-01T00:00:00Z") == "2026-05-03T12:00:00.000Z")  // 7 is Sunday
    }

    @Test func dayOfMonthOrDayOfWeekWhenBothAreRestricted() throws {
        // The 15th, or any Monday: Monday 4 May 2026 comes first.
        #expect(try next("0 0 15 * MON", "UTC", after: "2026-05-01T00:00:00Z") == "2026-05-04T00:00:00.000Z")
    }

    @Test func macros() throws {
        #expect(try next("@hourly", "UTC", after: "2026-05-01T10:59:00Z") == "2026-05-01T11:00:00.000Z")
        #expect(try next("@daily", "America/New_York", after: "2026-05-01T12:00:00Z") == "2026-05-02T04:00:00.000Z")
        #expect(try next("@weekly", "UTC", after: "2026-05-01T00:00:00Z") == "2026-05-03T00:00:00.000Z")
        #expect(try next("@monthly", "UTC", after: "2026-05-01T00:00:00Z") == "2026-06-01T00:00:00.000Z")
    }

    @Test func leapDayIsFoundYearsAhead() throws {
        #expect(try next("0 0 29 2 *", "UTC", after: "2026-03-01T00:00:00Z") == "2028-02-29T00:00:00.000Z")
    }

    // Europe/London: clocks go forward at 01:00 GMT on 29 March 2026 (01:00–01:59 does not exist)
    // and back at 02:00 BST on 25 October 2026 (01:00–01:59 happens twice).

    @Test func londonSkippedTimeFiresAtTheEndOfTheGap() throws {
        #expect(try next("30 1 * * *", "Europe/London", after: "2026-03-28T23:00:00Z") == "2026-03-29T01:00:00.000Z")
        #expect(try next("30 1 * * *", "Europe/London", after: "2026-03-29T01:00:00Z") == "2026-03-30T00:30:00.000Z")
    }

    @Test func londonSkippedMinutesFireOnceAtTheEndOfTheGap() throws {
        #expect(try next("*/20 1 * * *", "Europe/London", after: "2026-03-29T00:59:00Z") == "2026-03-29T01:00:00.000Z")
        #expect(try next("*/20 1-2 * * *", "Europe/London", after: "2026-03-29T01:00:00Z") == "2026-03-29T01:20:00.000Z")
    }

    @Test func londonRepeatedHourFiresOnce() throws {
        // 01:30 happens at 00:30Z (BST) and again at 01:30Z (GMT): only the first fires.
        #expect(try next("30 1 * * *", "Europe/London", after: "2026-10-24T23:00:00Z") == "2026-10-25T00:30:00.000Z")
        #expect(try next("30 1 * * *", "Europe/London", after: "2026-10-25T00:30:00Z") == "2026-10-26T01:30:00.000Z")
        // Every quarter hour: 01:45 BST, then 02:00 GMT — the repeated 01:00–01:45 GMT are skipped.
        #expect(try next("*/15 * * * *", "Europe/London", after: "2026-10-25T00:45:00Z") == "2026-10-25T02:00:00.000Z")
        // Asked from inside the second 01:xx, nothing in it fires again.
        #expect(try next("*/15 * * * *", "Europe/London", after: "2026-10-25T01:10:00Z") == "2026-10-25T02:00:00.000Z")
    }

    // America/New_York: 02:00 EST → 03:00 EDT on 8 March 2026; 02:00 EDT → 01:00 EST on 1 November.

    @Test func newYorkSkippedTime() throws {
        #expect(try next("30 2 * * *", "America/New_York", after: "2026-03-08T05:00:00Z") == "2026-03-08T07:00:00.000Z")
        #expect(try next("30 2 * * *", "America/New_York", after: "2026-03-08T07:00:00Z") == "2026-03-09T06:30:00.000Z")
    }

    @Test func newYorkRepeatedTime() throws {
        #expect(try next("30 1 * * *", "America/New_York", after: "2026-11-01T04:00:00Z") == "2026-11-01T05:30:00.000Z")
        #expect(try next("30 1 * * *", "America/New_York", after: "2026-11-01T05:30:00Z") == "2026-11-02T06:30:00.000Z")
        #expect(try next("0 * * * *", "America/New_York", after: "2026-11-01T05:00:00Z") == "2026-11-01T07:00:00.000Z")
    }

    @Test func syntaxErrorsNameTheFieldAndColumn() {
        #expect(syntaxError("61 * * * *") == CronSyntaxError("minute 61 is out of range 0-59", column: 1))
        #expect(syntaxError("0 9 * * MOM")?.column == 9)
        #expect(syntaxError("0 9 * * MOM")?.message.contains("did you mean \"MON\"?") == true)
        #expect(syntaxError("*/0 * * * *")?.column == 3)
        #expect(syntaxError("0 9 * *")?.message.contains("has 4") == true)
        #expect(syntaxError("0 17-9 * * *")?.message.contains("runs backwards") == true)
        #expect(syntaxError("0 0 31 2 *")?.message.contains("no day matches") == true)
        #expect(syntaxError("@fortnightly")?.column == 1)
        #expect(syntaxError("0,,5 * * * *")?.column == 3)
    }

    @Test func unknownTimeZoneIsRefused() {
        #expect(throws: CronSyntaxError.self) { try CronSchedule(cron: "0 0 * * *", timeZone: "Europe/Londn") }
    }
}
