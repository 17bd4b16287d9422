import Foundation

/// A first-in first-out hand-over between two threads, holding at most
/// `capacity` elements: the producer waits while it is full and the consumer
/// while it is empty, so a fast stage cannot run ahead of a slow one by more
/// than `capacity` batches and memory stays flat however long the input.
/// The lock is bound to the state it guards (as `NIOLockedValueBox` does):
/// every field below is read and written only with `condition` held.
///
/// Either side may `close` it: a closed queue takes nothing more (`put`
/// returns false, so a producer whose consumer failed stops), and `take`
/// returns what is left, then nil.
public final class BoundedQueue<Element>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var closed = false
    public let capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0, "a bounded queue holds at least one element")
        self.capacity = capacity
    }

    /// Adds `element` after the others, waiting while the queue is full.
    /// False, and the element dropped, once the queue is closed.
    @discardableResult
    public func put(_ element: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(element)
        condition.broadcast()
        return true
    }

    /// The oldest element, waiting while the queue is empty and open; nil
    /// once it is closed and empty.
    public func take() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        guard !items.isEmpty else { return nil }
        // At most `capacity` elements move: a handful.
        let element = items.removeFirst()
        condition.broadcast()
        return element
    }

    /// Waits until every element put so far has been taken; false once the
    /// queue is closed. A producer that calls it before making its next
    /// element keeps one fewer in memory: the consumer's, and its own.
    @discardableResult
    public func waitUntilEmpty() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !items.isEmpty && !closed { condition.wait() }
        return !closed
    }

    /// No more elements go in; what is queued can still be taken.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Thrown by a producer out of its loop when a `WorkerStage`'s `put`
/// returned false; the stage's own error comes from its `finish`.
public struct StageStopped: Error { public init() {} }

/// A helper thread that takes each element put in its bounded queue and
/// hands it to `body`, in order. The first error `body` throws ends it and
/// closes the queue, so the producer's next `put` returns false; `finish`
/// waits for the last element and rethrows that error. What `body` uses
/// belongs to the thread until `finish` has returned.
public final class WorkerStage<Element>: @unchecked Sendable {
    private let queue: BoundedQueue<Element>
    private let body: (Element) throws -> Void
    private var failure: (any Error)?
    private var thread: WorkerThread?

    public init(capacity: Int, _ body: @escaping (Element) throws -> Void) {
        queue = BoundedQueue(capacity: capacity)
        self.body = body
        thread = WorkerThread { [self] in run() }
    }

    /// Queues an element, waiting while the queue is full; false once the stage has failed or finished.
    @discardableResult
    public func put(_ element: Element) -> Bool { queue.put(element) }

    /// The producer failed: the stage ends after what is queued, without waiting for it.
    public func abandon() { queue.close() }

    /// No more elements: waits for the last to be handled; rethrows `body`'s error.
    public func finish() throws {
        queue.close()
        thread?.join()
        if let failure { throw failure }
    }

    private func run() {
        while let element = queue.take() {
            do { try body(element) } catch {
                failure = error
                queue.close()
                return
            }
        }
    }
}

/// Runs `body` on a thread of its own with a main-thread-sized stack (a
/// hostile request must not find a smaller stack on a helper thread than
/// on the main one); `join` waits for it to return.
public final class WorkerThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            body()
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Waits until the body has returned (once).
    public func join() { done.wait() }
}
