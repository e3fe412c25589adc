/// A binary min-heap.
package struct MinHeap<Element> {
    private var storage: [Element] = []
    private let areInIncreasingOrder: (Element, Element) -> Bool

    package init(by areInIncreasingOrder: @escaping (Element, Element) -> Bool) {
        self.areInIncreasingOrder = areInIncreasingOrder
    }

    package var count: Int { storage.count }
    package var isEmpty: Bool { storage.isEmpty }
    package var min: Element? { storage.first }

    package mutating func insert(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard areInIncreasingOrder(storage[child], storage[parent]) else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    package mutating func removeMin() -> Element? {
        guard !storage.isEmpty else { return nil }
        storage.swapAt(0, storage.count - 1)
        let min = storage.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < storage.count, areInIncreasingOrder(storage[left], storage[smallest]) { smallest = left }
            if right < storage.count, areInIncreasingOrder(storage[right], storage[smallest]) { smallest = right }
            if smallest == parent { break }
            storage.swapAt(parent, smallest)
            parent = smallest
        }
        return min
    }

    /// Keeps only the elements satisfying `isIncluded`, restoring heap order.
    package mutating func retain(where isIncluded: (Element) -> Bool) {
        let kept = storage.filter(isIncluded)
        storage.removeAll(keepingCapacity: true)
        for element in kept { insert(element) }
    }
}
