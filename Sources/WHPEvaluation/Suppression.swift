/// A table of counts with its margins: rows × columns, each row's total
/// (when `rowTotals`), each column's total and the grand total.
public struct CountTable: Sendable, Equatable {
    public var id: String
    public var title: String
    public var dimension: String
    public var rows: [String]
    public var columns: [String]
    public var cells: [[Int]]
    /// Whether the table prints a total per row (a one-column table does not: it would repeat the cell).
    public var rowTotals: Bool

    public init(id: String, title: String, dimension: String, rows: [String], columns: [String], cells: [[Int]], rowTotals: Bool) {
        self.id = id; self.title = title; self.dimension = dimension; self.rows = rows; self.columns = columns
        self.cells = cells; self.rowTotals = rowTotals
    }

    public func rowTotal(_ i: Int) -> Int { cells[i].reduce(0, +) }
    public func columnTotal(_ j: Int) -> Int { cells.reduce(0) { $0 + $1[j] } }
    public var grandTotal: Int { cells.reduce(0) { $0 + $1.reduce(0, +) } }
}

/// A table as published: which of its figures are suppressed.
public struct PublishedTable: Sendable, Equatable {
    public var table: CountTable
    public var cellSuppressed: [[Bool]]
    public var rowTotalSuppressed: [Bool]
    public var columnTotalSuppressed: [Bool]
    public var grandTotalSuppressed: Bool

    public init(unsuppressed t: CountTable) {
        table = t
        cellSuppressed = t.cells.map { $0.map { _ in false } }
        rowTotalSuppressed = t.rows.map { _ in false }
        columnTotalSuppressed = t.columns.map { _ in false }
        grandTotalSuppressed = false
    }

    /// nil when suppressed.
    public func cell(_ i: Int, _ j: Int) -> Int? { cellSuppressed[i][j] ? nil : table.cells[i][j] }
    public func rowTotal(_ i: Int) -> Int? { rowTotalSuppressed[i] ? nil : table.rowTotal(i) }
    public func columnTotal(_ j: Int) -> Int? { columnTotalSuppressed[j] ? nil : table.columnTotal(j) }
    public var grandTotal: Int? { grandTotalSuppressed ? nil : table.grandTotal }

    /// Whether no figure of row `i` (its cells and its total) is suppressed.
    public func rowFullyPublished(_ i: Int) -> Bool {
        guard i < table.rows.count else { return true }
        return !cellSuppressed[i].contains(true) && !(table.rowTotals && rowTotalSuppressed[i])
    }

    public var suppressedCount: Int {
        cellSuppressed.reduce(0) { $0 + $1.filter { $0 }.count } + rowTotalSuppressed.filter { $0 }.count
            + columnTotalSuppressed.filter { $0 }.count + (grandTotalSuppressed ? 1 : 0)
    }
}

/// Cell suppression for publication (RULES2 R12). Every count from 1 to 9 is
/// suppressed (zeros are published); then more non-zero figures are
/// suppressed until every suppressed figure is *protected*: for each one
/// there is another table of non-negative integers, every suppressed figure
/// at least 1, that agrees with every published figure of every table and
/// gives it a different value. So no suppressed figure can be worked out
/// from the report.
///
/// The proof of protection is constructive. The `linked` tables partition
/// one set of records by different dimensions over the same columns, so they
/// share one row of column totals and one grand total; `single` tables are
/// one column each, with a total and no row totals, and share nothing. In
/// each linked table bordered by its margins (the row-total column and the
/// shared total row negated, so every row and column sums to zero), moving
/// ±1 around an alternating cycle of suppressed figures changes no row or
/// column sum. A cycle inside one table leaves every other table alone; one
/// through the shared total row must be matched, in every other linked table,
/// by a path between the same two columns. A move is allowed when no figure
/// it lowers is below 2. Cycles and paths are found by breadth-first search,
/// so the check is sound (a figure it calls protected is) though it may
/// suppress more than the least needed.
///
/// Complementary figures are chosen smallest first from the unprotected
/// figure's own row and column, so the least is hidden; if every non-zero
/// figure ends up suppressed, each is protected by raising it with its
/// margins, so the loop always ends safe.
public enum Suppression {
    /// Counts from 1 to `threshold - 1` are suppressed.
    public static let threshold = 10

    public static func protect(linked: [CountTable], single: [CountTable]) -> [PublishedTable] {
        var grid = LinkedGrid(linked)
        grid.suppressSmall()
        while let f = grid.firstUnprotected() {
            guard grid.suppressComplement(of: f) else { break }
        }
        var singles = single.map { SingleColumn($0) }
        for k in singles.indices {
            singles[k].suppressSmall()
            while let f = singles[k].firstUnprotected() {
                guard singles[k].suppressComplement(of: f) else { break }
            }
        }
        return grid.published() + singles.map { $0.published() }
    }
}

/// A figure of the linked tables: block `b`, row `r` and column `c` of its
/// bordered table, where `r == rows` is the shared total row and
/// `c == columns` the row-total column.
struct Figure: Hashable {
    var block: Int, row: Int, column: Int
}

struct LinkedGrid {
    /// One bordered table: `value[r][c]` for r ≤ rows, c ≤ columns.
    struct Block {
        var rows: Int
        var value: [[Int]]
        var suppressed: [[Bool]]
    }
    var tables: [CountTable]
    var blocks: [Block]
    let columns: Int
    /// The shared total row: the column totals, then the grand total.
    var top: [Int]
    var topSuppressed: [Bool]

    init(_ tables: [CountTable]) {
        self.tables = tables
        columns = tables.first?.columns.count ?? 0
        let c = columns
        blocks = tables.map { t in
            var value = t.cells.map { $0 + [$0.reduce(0, +)] }
            value.append([Int](repeating: 0, count: c + 1))
            return Block(rows: t.cells.count, value: value, suppressed: value.map { $0.map { _ in false } })
        }
        top = tables.first.map { t in (0..<c).map { t.columnTotal($0) } + [t.grandTotal] } ?? [Int](repeating: 0, count: c + 1)
        topSuppressed = top.map { _ in false }
    }

    func value(_ f: Figure) -> Int { f.row == blocks[f.block].rows ? top[f.column] : blocks[f.block].value[f.row][f.column] }
    func isSuppressed(_ f: Figure) -> Bool {
        f.row == blocks[f.block].rows ? topSuppressed[f.column] : blocks[f.block].suppressed[f.row][f.column]
    }
    mutating func suppress(_ f: Figure) {
        if f.row == blocks[f.block].rows { topSuppressed[f.column] = true } else { blocks[f.block].suppressed[f.row][f.column] = true }
    }

    /// +1 for a cell and the grand total, −1 for a row total and a column
    /// total: a figure's value is `orient ×` its entry in the bordered table
    /// whose rows and columns all sum to zero.
    func orient(row: Int, column: Int, rows: Int) -> Int { (row == rows) == (column == columns) ? 1 : -1 }

    /// Whether changing the figure by `delta` keeps it at least 1.
    func allowed(_ value: Int, _ delta: Int) -> Bool { delta > 0 || value + delta >= 1 }

    mutating func suppressSmall() {
        for b in blocks.indices {
            for r in 0..<blocks[b].rows {
                for c in 0...columns where (1..<Suppression.threshold).contains(blocks[b].value[r][c]) { blocks[b].suppressed[r][c] = true }
            }
        }
        for c in 0...columns where (1..<Suppression.threshold).contains(top[c]) { topSuppressed[c] = true }
    }

    /// Every suppressed figure, the shared total row once (as block 0's).
    var suppressedFigures: [Figure] {
        var out: [Figure] = []
        for b in blocks.indices {
            for r in 0..<blocks[b].rows { for c in 0...columns where blocks[b].suppressed[r][c] { out.append(Figure(block: b, row: r, column: c)) } }
        }
        if !blocks.isEmpty { for c in 0...columns where topSuppressed[c] { out.append(Figure(block: 0, row: blocks[0].rows, column: c)) } }
        return out
    }

    func firstUnprotected() -> Figure? { suppressedFigures.first { !isProtected($0) } }

    // MARK: the search

    /// Nodes of a block's bipartite graph: rows 0..<rows (the private rows)
    /// and columns 0...columns, numbered rows + c.
    /// A step from a column node to a row node moves that cell's bordered
    /// entry by +u; a step from a row to a column by −u. Only suppressed,
    /// private cells are steps, and only when the move keeps them ≥ 1.
    func canStep(block b: Int, row r: Int, column c: Int, fromColumn: Bool, u: Int) -> Bool {
        let bl = blocks[b]
        guard bl.suppressed[r][c] else { return false }
        let entryChange = fromColumn ? u : -u
        return allowed(bl.value[r][c], orient(row: r, column: c, rows: bl.rows) * entryChange)
    }

    /// A simple path between two nodes of block `b` (nil if none), avoiding
    /// `blockedNodes` and the cell `skip`. Returns the nodes in order.
    func path(block b: Int, from start: Int, to goal: Int, u: Int, blockedNodes: Set<Int> = [], skip: Figure? = nil) -> [Int]? {
        let rows = blocks[b].rows
        if start == goal { return [start] }
        var previous = [Int: Int]()
        var queue = [start]
        var seen: Set<Int> = [start]
        var head = 0
        while head < queue.count {
            let node = queue[head]
            head += 1
            var next: [Int] = []
            if node >= rows {
                let c = node - rows
                for r in 0..<rows where canStep(block: b, row: r, column: c, fromColumn: true, u: u) {
                    if let skip, skip.block == b, skip.row == r, skip.column == c { continue }
                    next.append(r)
                }
            } else {
                for c in 0...columns where canStep(block: b, row: node, column: c, fromColumn: false, u: u) {
                    if let skip, skip.block == b, skip.row == node, skip.column == c { continue }
                    next.append(rows + c)
                }
            }
            for n in next where !seen.contains(n) && !blockedNodes.contains(n) {
                seen.insert(n)
                previous[n] = node
                if n == goal {
                    var out = [n]
                    var k = n
                    while let p = previous[k] { out.append(p); k = p }
                    return out.reversed()
                }
                queue.append(n)
            }
        }
        return nil
    }

    /// Whether the shared total row can move: column `c1`'s entry by +u and `c2`'s by −u.
    func topMove(_ c1: Int, _ c2: Int, u: Int) -> Bool {
        guard c1 != c2, topSuppressed[c1], topSuppressed[c2], let rows = blocks.first?.rows else { return false }
        return allowed(top[c1], orient(row: rows, column: c1, rows: rows) * u)
            && allowed(top[c2], orient(row: rows, column: c2, rows: rows) * -u)
    }

    func isProtected(_ f: Figure) -> Bool {
        let rows = blocks[f.block].rows
        let us = [1, -1]
        if f.row < rows {
            // A cycle inside the block: step through f from its column to its row, then back.
            for u in us where canStep(block: f.block, row: f.row, column: f.column, fromColumn: true, u: u) {
                if path(block: f.block, from: f.row, to: rows + f.column, u: u, skip: f) != nil { return true }
            }
            // A cycle through the shared total row, matched in every block.
            for c1 in 0...columns {
                for c2 in 0...columns where c1 != c2 {
                    for u in us where topMove(c1, c2, u: u) {
                        guard pathThrough(f, from: rows + c2, to: rows + c1, u: u) else { continue }
                        if blocks.indices.allSatisfy({ $0 == f.block || path(block: $0, from: blocks[$0].rows + c2, to: blocks[$0].rows + c1, u: u) != nil }) {
                            return true
                        }
                    }
                }
            }
            return false
        }
        // A shared total: paired with another, and a path in every block.
        for other in 0...columns where other != f.column {
            for (c1, c2) in [(f.column, other), (other, f.column)] {
                for u in us where topMove(c1, c2, u: u) {
                    if blocks.indices.allSatisfy({ path(block: $0, from: blocks[$0].rows + c2, to: blocks[$0].rows + c1, u: u) != nil }) {
                        return true
                    }
                }
            }
        }
        return false
    }

    /// A path from `start` to `goal` in f's block that steps through f (either way).
    func pathThrough(_ f: Figure, from start: Int, to goal: Int, u: Int) -> Bool {
        let rows = blocks[f.block].rows
        let rowNode = f.row, columnNode = rows + f.column
        for (entry, exit, fromColumn) in [(columnNode, rowNode, true), (rowNode, columnNode, false)] {
            guard canStep(block: f.block, row: f.row, column: f.column, fromColumn: fromColumn, u: u) else { continue }
            guard let first = path(block: f.block, from: start, to: entry, u: u, blockedNodes: [exit], skip: f) else { continue }
            if path(block: f.block, from: exit, to: goal, u: u, blockedNodes: Set(first), skip: f) != nil { return true }
        }
        return false
    }

    // MARK: choosing the complement

    /// Suppresses one more figure to help protect `f`; false when no figure is left to suppress.
    mutating func suppressComplement(of f: Figure) -> Bool {
        let rows = blocks[f.block].rows
        var candidates: [Figure] = []
        if f.row < rows {
            for c in 0...columns where c != f.column { candidates.append(Figure(block: f.block, row: f.row, column: c)) }
            for r in 0..<rows where r != f.row { candidates.append(Figure(block: f.block, row: r, column: f.column)) }
        }
        if let best = smallestPublished(candidates) { suppress(best); return true }
        // The shared total row: the figure's own column first, then the smallest.
        let topRow = (0...columns).map { Figure(block: 0, row: blocks[0].rows, column: $0) }
        if f.row < rows, let own = smallestPublished([Figure(block: 0, row: blocks[0].rows, column: f.column)]) { suppress(own); return true }
        if let best = smallestPublished(topRow) { suppress(best); return true }
        // Then anything still published, smallest first.
        var all: [Figure] = []
        for b in blocks.indices { for r in 0..<blocks[b].rows { for c in 0...columns { all.append(Figure(block: b, row: r, column: c)) } } }
        if let best = smallestPublished(all) { suppress(best); return true }
        return false
    }

    func smallestPublished(_ figures: [Figure]) -> Figure? {
        figures.filter { !isSuppressed($0) && value($0) > 0 }.min { (value($0), $0.row, $0.column) < (value($1), $1.row, $1.column) }
    }

    func published() -> [PublishedTable] {
        tables.indices.map { b in
            var p = PublishedTable(unsuppressed: tables[b])
            let rows = blocks[b].rows
            for r in 0..<rows {
                for c in 0..<columns { p.cellSuppressed[r][c] = blocks[b].suppressed[r][c] }
                p.rowTotalSuppressed[r] = blocks[b].suppressed[r][columns]
            }
            for c in 0..<columns { p.columnTotalSuppressed[c] = topSuppressed[c] }
            p.grandTotalSuppressed = topSuppressed[columns]
            return p
        }
    }
}

/// A one-column table with its total: a cell is protected by another
/// suppressed cell (one rises, the other falls) or by the suppressed total
/// (both rise); the total by any suppressed cell.
struct SingleColumn {
    var table: CountTable
    var value: [Int]
    var suppressed: [Bool]
    var totalSuppressed = false
    var total: Int { value.reduce(0, +) }

    init(_ t: CountTable) {
        table = t
        value = t.cells.map { $0.first ?? 0 }
        suppressed = value.map { _ in false }
    }

    mutating func suppressSmall() {
        for i in value.indices where (1..<Suppression.threshold).contains(value[i]) { suppressed[i] = true }
        if (1..<Suppression.threshold).contains(total) { totalSuppressed = true }
    }

    /// A row index, or −1 for the total.
    func firstUnprotected() -> Int? {
        for i in value.indices where suppressed[i] {
            if totalSuppressed { continue }
            if value.indices.contains(where: { $0 != i && suppressed[$0] && (value[$0] >= 2 || value[i] >= 2) }) { continue }
            return i
        }
        if totalSuppressed && !suppressed.contains(true) { return -1 }
        return nil
    }

    mutating func suppressComplement(of f: Int) -> Bool {
        let candidates = value.indices.filter { $0 != f && !suppressed[$0] && value[$0] > 0 }
        if let best = candidates.min(by: { (value[$0], $0) < (value[$1], $1) }) {
            suppressed[best] = true
            return true
        }
        if f >= 0 && !totalSuppressed && total > 0 {
            totalSuppressed = true
            return true
        }
        return false
    }

    func published() -> PublishedTable {
        var p = PublishedTable(unsuppressed: table)
        for i in value.indices { p.cellSuppressed[i][0] = suppressed[i] }
        if !p.columnTotalSuppressed.isEmpty { p.columnTotalSuppressed[0] = totalSuppressed }
        p.grandTotalSuppressed = totalSuppressed
        return p
    }
}
