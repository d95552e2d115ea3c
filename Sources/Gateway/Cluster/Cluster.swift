import Agents
import Backend
import Logging
import NIOCore
import Redis
import Router

/// What one replica shares with the others through Redis: shared memory and pub-sub for the
/// coordination methods, the task board, the replica directory, and the bus that carries calls
/// to agents attached elsewhere.
final class Cluster: Sendable {
    let settings: RedisSettings
    let client: RedisClient
    let events: RedisPubSub
    let tasks: SharedTaskEngine
    let bus: ReplicaBus
    let membership: ReplicaMembership
    let coordination: CoordinationBackend

    init(settings: RedisSettings, agents: AgentRegistry, group: any EventLoopGroup, logger: Logger, listeners: @escaping @Sendable () -> [String]) {
        self.settings = settings
        let client = RedisClient(configuration: settings.configuration, connections: 4, eventLoopGroup: group)
        let events = RedisPubSub(client: client, channelPrefix: settings.keyPrefix)
        self.client = client
        self.events = events
        agents.setLocalReplica(settings.replicaID)
        tasks = SharedTaskEngine(
            board: RedisTaskBoard(client: client, keyPrefix: settings.keyPrefix), events: events, agents: agents,
            owner: settings.replicaID, lease: settings.taskLease, timers: group, logger: logger)
        bus = ReplicaBus(replica: settings.replicaID, events: events, agents: agents, group: group, logger: logger)
        membership = ReplicaMembership(
            replica: settings.replicaID, directory: RedisReplicaDirectory(client: client, keyPrefix: settings.keyPrefix),
            agents: agents, bus: bus, logger: logger, listeners: listeners)
        coordination = CoordinationBackend(
            store: RedisKeyValueStore(client: client, keyPrefix: settings.keyPrefix), events: events, clock: SystemClock(),
            maintenance: {
                // Redis expires keys itself; nothing to sweep.
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            })
        logger.info("replica \(settings.replicaID) sharing \(settings.displayURL)")
    }

    /// Runs the replica's shared parts until cancelled, then leaves the directory and closes.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.bus.run() }
            group.addTask { await self.membership.run() }
            group.addTask { await self.tasks.run() }
            await group.waitForAll()
        }
        await events.shutdown()
        await client.shutdown()
    }
}
