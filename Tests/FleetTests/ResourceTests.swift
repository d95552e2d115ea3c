import Testing

@testable import Fleet

@Suite("Resource requests as written")
struct ResourceRequestTests {
    private func parse(_ members: [(String, ResourceRequest.Written)]) throws -> ResourceRequest {
        try ResourceRequest.parse(members.map { (key: $0.0, value: $0.1) }, where: "agents.pricing.resources")
    }

    @Test func kubernetesQuantitiesAreRead() throws {
        let request = try parse([("cpu", .string("500m")), ("memory", .string("256Mi")), ("gpu", .number(1)), ("processes", .number(64))])
        #expect(request == ResourceRequest(cpu: 0.5, memoryBytes: 268_435_456, gpus: 1, processes: 64))
        #expect(try parse([("memory", .string("1G"))]).memoryBytes == 1_000_000_000)
        #expect(try parse([("memory", .string("1.5Gi"))]).memoryBytes == 1_610_612_736)
        #expect(try parse([("memory", .number(8_388_608))]).memoryBytes == 8_388_608)
        #expect(try parse([("cpu", .number(2))]).cpu == 2)
    }

    @Test func aMisspeltOrImpossibleMemberIsRefusedByName() {
        #expect(throws: ResourceRequest.Problem("agents.pricing.resources has no member \"cpus_max\" (cpu, memory, gpu, processes)")) {
            try parse([("cpus_max", .number(1))])
        }
        #expect(throws: ResourceRequest.Problem.self) { try parse([("cpu", .number(0))]) }
        #expect(throws: ResourceRequest.Problem.self) { try parse([("memory", .string("1Zi"))]) }
        #expect(throws: ResourceRequest.Problem.self) { try parse([("memory", .number(1024))]) }  // below 4Mi
        #expect(throws: ResourceRequest.Problem.self) { try parse([("gpu", .number(0.5))]) }
    }

    @Test func sizesAreShownAsPeopleReadThem() {
        #expect(ResourceRequest.formatBytes(268_435_456) == "256Mi")
        #expect(ResourceRequest.formatBytes(1_610_612_736) == "1.5Gi")
        #expect(ResourceRequest.formatBytes(512) == "512")
    }
}

@Suite("The resource ledger")
struct ResourceLedgerTests {
    let capacity = MachineCapacity(cpu: 2, memoryBytes: 1 << 30, gpus: ["0", "1"])

    @Test func whatTheMachineCannotGiveIsRefusedNeverGrantedOnPaper() {
        let ledger = ResourceLedger(capacity: capacity)
        #expect(throws: ResourceLedger.Refusal.exceedsCapacity("asks for 9999 CPUs; the gateway may give 2 in all")) {
            try ledger.check(ResourceRequest(cpu: 9999, memoryBytes: 1 << 40, gpus: 512))
        }
        #expect(ledger.grants.isEmpty)
    }

    @Test func aPoolOfTwoNeverGivesOneGPUToTwoInstances() throws {
        let ledger = ResourceLedger(capacity: capacity, prices: PriceTable(gpuHour: 2.5))
        let first = try ledger.reserve(instance: "a#1", template: "a", request: ResourceRequest(gpus: 1), now: 0)
        let second = try ledger.reserve(instance: "a#2", template: "a", request: ResourceRequest(gpus: 1), now: 0)
        #expect(Set(first.gpus + second.gpus) == ["0", "1"])
        #expect(throws: ResourceLedger.Refusal.unavailable("asks for 1 GPU; 0 of the pool's 2 are free", preemptible: [])) {
            try ledger.reserve(instance: "a#3", template: "a", request: ResourceRequest(gpus: 1), now: 0)
        }
        ledger.release(instance: "a#1", now: 10)
        let third = try ledger.reserve(instance: "a#3", template: "a", request: ResourceRequest(gpus: 1), now: 11)
        #expect(third.gpus == first.gpus)
        #expect(ledger.allocated.costPerHour == 5)
    }

    @Test func aResizeIsCheckedAsIfItsOldGrantWereFreeAndKeepsItsGPUs() throws {
        let ledger = ResourceLedger(capacity: capacity)
        let before = try ledger.reserve(instance: "a#1", template: "a", request: ResourceRequest(cpu: 1.5, gpus: 1), now: 0)
        let after = try ledger.reserve(instance: "a#1", template: "a", request: ResourceRequest(cpu: 2, gpus: 1), now: 5)
        #expect(after.gpus == before.gpus && after.allocatedAt == 0)
        #expect(ledger.allocated.cpu == 2)
    }

    @Test func onlyLowerClassesHoldingWhatIsShortArePreemptible() throws {
        let ledger = ResourceLedger(capacity: MachineCapacity(cpu: 1, memoryBytes: 1 << 30, gpus: ["0"]))
        try ledger.reserve(instance: "batch#1", template: "batch", request: ResourceRequest(cpu: 0.5), priority: .low, now: 0)
        try ledger.reserve(instance: "batch#2", template: "batch", request: ResourceRequest(cpu: 0.5), priority: .low, now: 1)
        try ledger.reserve(instance: "cache#1", template: "cache", request: ResourceRequest(memoryBytes: 1 << 29), priority: .low, now: 2)
        try ledger.reserve(instance: "gpu#1", template: "gpu", request: ResourceRequest(gpus: 1), priority: .normal, now: 3)
        // The newest low-class CPU holder goes; the memory holder frees nothing a CPU start lacks.
        #expect(throws: ResourceLedger.Refusal.unavailable("asks for 0.5 CPUs; 0 of 1 are free", preemptible: ["batch#2"])) {
            try ledger.reserve(instance: "urgent#1", template: "urgent", request: ResourceRequest(cpu: 0.5), priority: .high, now: 4)
        }
        // Never from its own class or above.
        #expect(throws: ResourceLedger.Refusal.unavailable("asks for 1 GPU; 0 of the pool's 1 are free", preemptible: [])) {
            try ledger.reserve(instance: "gpu#2", template: "gpu", request: ResourceRequest(gpus: 1), priority: .normal, now: 5)
        }
    }

    @Test func allocationsAreRowsPerResourceWithUseCostAndRelease() throws {
        let ledger = ResourceLedger(capacity: capacity, prices: PriceTable(cpuHour: 0.04, memoryGiBHour: 0.005), releasedRowLimit: 2)
        try ledger.reserve(instance: "p#1", template: "p", request: ResourceRequest(cpu: 0.5, memoryBytes: 256 << 20), now: 100)
        ledger.recordUse(instance: "p#1", cpuPercentOfOneCore: 25, memoryBytes: 128 << 20)
        let rows = ledger.rows()
        #expect(rows.map(\.resourceType) == ["cpu", "memory"])
        #expect(rows.map(\.utilizationPercent) == [50, 50])
        #expect(rows[0].costPerHour == 0.02 && rows[1].amount == 256 && rows[1].unit == "MiB")
        ledger.release(instance: "p#1", now: 200)
        #expect(ledger.rows().isEmpty)
        #expect(ledger.rows(includeReleased: true).map(\.releasedAt) == [200, 200])
        // Released rows are kept up to the limit.
        try ledger.reserve(instance: "p#2", template: "p", request: ResourceRequest(cpu: 0.5), now: 300)
        ledger.release(instance: "p#2", now: 400)
        #expect(ledger.rows(includeReleased: true).count == 2)
    }
}

@Suite("The launch chain")
struct LaunchPlanTests {
    let bare = IsolationHost(cgroups: nil, bubblewrap: "/usr/bin/bwrap", setpriv: "/usr/bin/setpriv", prlimit: "/usr/bin/prlimit", isRoot: true)

    @Test func withoutControlGroupsMemoryIsAnRlimitAndCPUIsRefused() throws {
        let plan = try LaunchPlanner.plan(
            instance: "p#1", command: "/usr/bin/python3", arguments: ["agent.py"], resources: ResourceRequest(memoryBytes: 64 << 20, processes: 32),
            sandbox: nil, host: bare)
        #expect([plan.executable] + plan.arguments == ["/usr/bin/prlimit", "--as=67108864", "--nproc=32", "--", "/usr/bin/python3", "agent.py"])
        #expect(throws: IsolationError.self) {
            try LaunchPlanner.plan(instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(cpu: 1), sandbox: nil, host: bare)
        }
    }

    @Test func aSandboxIsBubblewrapThenSetprivThenTheCommand() throws {
        let sandbox = Sandbox(user: "nobody", network: .none, readOnlyPaths: ["/"], writablePaths: ["/tmp"], privateTmp: false)
        let plan = try LaunchPlanner.plan(instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(), sandbox: sandbox, host: bare)
        let chain = [plan.executable] + plan.arguments
        #expect(chain.first == "/usr/bin/bwrap")
        #expect(chain.contains("--unshare-net") && chain.contains("--die-with-parent"))
        let readOnly = chain.firstIndex(of: "--ro-bind")!
        #expect(Array(chain[readOnly...readOnly + 2]) == ["--ro-bind", "/", "/"])
        let setpriv = chain.firstIndex(of: "/usr/bin/setpriv")!
        #expect(chain[setpriv + 1] == "--no-new-privs" && chain.contains("--reuid=65534"))
        // Whatever the user, no capability is left to undo the sandbox with, and /sys is read-only.
        #expect(chain.contains("--bounding-set=-all") && chain.contains("--inh-caps=-all"))
        let sys = chain.firstIndex(of: "/sys")!
        #expect(chain[sys - 1] == "--ro-bind")
        #expect(chain.suffix(2) == ["--", "/bin/true"])
    }

    @Test func aSandboxThatCannotBeBuiltRefusesTheStart() {
        var host = bare
        host.bubblewrap = nil
        #expect(throws: IsolationError.self) {
            try LaunchPlanner.plan(
                instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(), sandbox: Sandbox(privateTmp: true), host: host)
        }
        #expect(throws: IsolationError("sandbox.user root is root (uid 0), which no sandbox holds; name another user")) {
            try LaunchPlanner.plan(
                instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(), sandbox: Sandbox(user: "root"), host: bare)
        }
        host.isRoot = false
        #expect(throws: IsolationError.self) {
            try LaunchPlanner.plan(
                instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(), sandbox: Sandbox(user: "nobody"), host: host)
        }
        #expect(throws: IsolationError("sandbox.writablePaths: /nonexistent/sb does not exist")) {
            try LaunchPlanner.plan(
                instance: "p#1", command: "/bin/true", arguments: [], resources: ResourceRequest(), sandbox: Sandbox(writablePaths: ["/nonexistent/sb"]),
                host: bare)
        }
    }
}

@Suite("Judging a rollout")
struct RolloutJudgeTests {
    let policy = RolloutPolicy()

    @Test func aVersionThatFailsMostOfItsCallsIsWorseAtOnce() {
        let verdict = RolloutJudge.verdict(new: VersionFigures(calls: 4, failures: 3), old: VersionFigures(calls: 40, failures: 0), policy: policy)
        guard case .worse = verdict else { Issue.record("\(verdict)"); return }
    }

    @Test func tooFewCallsAreUndecidedAndEnoughAreJudgedByRateAndLatency() {
        guard case .undecided = RolloutJudge.verdict(new: VersionFigures(calls: 2), old: VersionFigures(calls: 40), policy: policy) else {
            Issue.record("two calls decided something")
            return
        }
        let old = VersionFigures(calls: 100, failures: 1, latencySeconds: 10)
        guard case .healthy = RolloutJudge.verdict(new: VersionFigures(calls: 20, failures: 0, latencySeconds: 2.5), old: old, policy: policy) else {
            Issue.record("a like version judged worse")
            return
        }
        guard case .worse = RolloutJudge.verdict(new: VersionFigures(calls: 20, failures: 3, latencySeconds: 2), old: old, policy: policy) else {
            Issue.record("15% errors against 1% passed")
            return
        }
        guard case .worse = RolloutJudge.verdict(new: VersionFigures(calls: 20, failures: 0, latencySeconds: 6), old: old, policy: policy) else {
            Issue.record("three times slower passed")
            return
        }
    }
}
