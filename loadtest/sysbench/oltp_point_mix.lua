#!/usr/bin/sysbench
-- sqlgate's mixed workload as sysbench runs it straight to one server (`make bench`, group
-- `mixed`): every event is ONE statement in autocommit, either a point select
--   SELECT c FROM sbtestN WHERE id=?
-- or a point update
--   UPDATE sbtestN SET k=k+1 WHERE id=?
-- Per thread, --index_updates of every --point_selects + --index_updates events are updates,
-- evenly spread: with --point_selects=9 --index_updates=1, every 10th event (90/10). It is
-- the rule loadtest's gateway side uses (scenario::mix_is_write), so both run the same
-- sequence. Tables and ids as sysbench's own scripts (--tables, --table-size, --rand-type);
-- prepared statements, as oltp_point_select and oltp_update_index.
--
--   sysbench /path/to/oltp_point_mix.lua --point_selects=9 --index_updates=1 \
--     --tables=2 --table-size=100000 --threads=16 --time=15 ... run

require("oltp_common")

function prepare_statements()
   prepare_point_selects()
   prepare_index_updates()
end

-- Events this thread has run (each thread has its own Lua state).
local n = 0

function event()
   local writes = sysbench.opt.index_updates
   local cycle = sysbench.opt.point_selects + writes
   local tnum = sysbench.rand.uniform(1, sysbench.opt.tables)
   local id = sysbench.rand.default(1, sysbench.opt.table_size)
   if cycle > 0 and math.floor((n + 1) * writes / cycle) > math.floor(n * writes / cycle) then
      param[tnum].index_updates[1]:set(id)
      stmt[tnum].index_updates:execute()
   else
      param[tnum].point_selects[1]:set(id)
      stmt[tnum].point_selects:execute()
   end
   n = n + 1
end
