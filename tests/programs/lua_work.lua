-- tests/programs/lua_work.lua - an allocation-heavy Lua program: Lua's
-- allocator calls realloc(NULL, n) for every new object and free for every
-- dead one. Binary trees built and walked depth by depth (tables of two),
-- then 200,000 formatted strings joined and split again. Prints checksums
-- that do not depend on the allocator.
-- Usage: lua5.4 lua_work.lua [depth]   (default 12)

local function tree(d)
  if d == 0 then return {} end
  return { tree(d - 1), tree(d - 1) }
end

local function count(t)
  if t[1] then return 1 + count(t[1]) + count(t[2]) end
  return 1
end

local depth = tonumber(arg and arg[1]) or 12
local kept = tree(depth)
local nodes = 0
for d = 4, depth, 2 do
  for _ = 1, 2 ^ (depth - d + 4) do nodes = nodes + count(tree(d)) end
end
print("trees", nodes, count(kept))

local parts = {}
for i = 1, 200000 do parts[#parts + 1] = string.format("%d:%s", i, string.rep("x", i % 50)) end
local joined = table.concat(parts, ",")
local fields, sum = 0, 0
for n, xs in joined:gmatch("(%d+):(x*)") do
  fields = fields + 1
  sum = sum + tonumber(n) + #xs
end
print("strings", #joined, fields, sum)
