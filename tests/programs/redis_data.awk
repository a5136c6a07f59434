# redis_data.awk - the deterministic data set of the Redis consistency check.
#
#   awk -v what=load   -f redis_data.awk   RESP commands that write it
#   awk -v what=probe  -f redis_data.awk   inline read commands, one a line
#   awk -v what=expect -f redis_data.awk   the replies `redis-cli` must print
#                                          for the probe commands, one a line
#   awk -v what=mutate -f redis_data.awk   RESP commands that change part of it
#   awk -v what=probe2 / expect2           the same after the mutation
#
# The set: NKEYS strings k:00000.. (1 byte to 2.5 KB, every 500th one about
# 100 KB so Redis also makes large allocations), NLISTS lists of LLEN
# elements and NHASHES hashes of HFIELDS fields. Values only use [a-z0-9:-],
# so each reply is one line.

function val(i, n,    base, s, c) {
    c = substr("abcdefghijklmnopqrstuvwxyz0123456789", i % 36 + 1, 1)
    base = "v" i ":" c c c "-"
    s = base
    while (length(s) < n)
        s = s s
    return substr(s, 1, n)
}
function vlen(i) {
    if (i % 500 == 7)
        return 100000 + i
    return (i * 7919) % 2500 + 1
}
function key(i) { return sprintf("k:%05d", i) }
function lkey(i) { return sprintf("l:%03d", i) }
function hkey(i) { return sprintf("h:%03d", i) }
function lval(i, j) { return val(i * 1000 + j, 8 + (i * 31 + j * 17) % 300) }
function hval(i, j) { return val(i * 777 + j, 4 + (i * 13 + j * 7) % 200) }
function resp(n, a, b, c, d) {
    printf "*%d\r\n", n
    printf "$%d\r\n%s\r\n", length(a), a
    printf "$%d\r\n%s\r\n", length(b), b
    if (n > 2) printf "$%d\r\n%s\r\n", length(c), c
    if (n > 3) printf "$%d\r\n%s\r\n", length(d), d
}

BEGIN {
    NKEYS = 10000; NLISTS = 100; LLEN = 100; NHASHES = 100; HFIELDS = 50
    if (what == "load") {
        for (i = 0; i < NKEYS; i++)
            resp(3, "SET", key(i), val(i, vlen(i)))
        for (i = 0; i < NLISTS; i++)
            for (j = 0; j < LLEN; j++)
                resp(3, "RPUSH", lkey(i), lval(i, j))
        for (i = 0; i < NHASHES; i++)
            for (j = 0; j < HFIELDS; j++)
                resp(4, "HSET", hkey(i), "f" j, hval(i, j))
    } else if (what == "probe" || what == "probe2") {
        print "DBSIZE"
        for (i = 0; i < NKEYS; i += 37) {
            print "GET " key(i)
            print "STRLEN " key(i)
        }
        for (i = 7; i < NKEYS; i += 500)
            print "GET " key(i)
        for (i = 0; i < NLISTS; i += 9) {
            print "LLEN " lkey(i)
            print "LINDEX " lkey(i) " " (i % (LLEN - 10))
        }
        for (i = 0; i < NHASHES; i += 11) {
            print "HLEN " hkey(i)
            print "HGET " hkey(i) " f" (i % HFIELDS)
        }
    } else if (what == "expect" || what == "expect2") {
        after = (what == "expect2")
        # mutation: odd keys deleted, every 10th key appended to, first 10
        # elements of every list popped, field f0 of every hash deleted
        print NKEYS + NLISTS + NHASHES - (after ? NKEYS / 2 : 0)
        for (i = 0; i < NKEYS; i += 37) {
            v = val(i, vlen(i))
            if (after && i % 2 == 1) v = ""
            else if (after && i % 10 == 0) v = v "-appended-" i
            print v
            print length(v)
        }
        for (i = 7; i < NKEYS; i += 500)
            print (after ? "" : val(i, vlen(i)))
        for (i = 0; i < NLISTS; i += 9) {
            print (after ? LLEN - 10 : LLEN)
            print lval(i, (i % (LLEN - 10)) + (after ? 10 : 0))
        }
        for (i = 0; i < NHASHES; i += 11) {
            print (after ? HFIELDS - 1 : HFIELDS)
            print ((after && i % HFIELDS == 0) ? "" : hval(i, i % HFIELDS))
        }
    } else if (what == "mutate") {
        for (i = 1; i < NKEYS; i += 2)
            resp(2, "DEL", key(i))
        for (i = 0; i < NKEYS; i += 10)
            resp(3, "APPEND", key(i), "-appended-" i)
        for (i = 0; i < NLISTS; i++)
            resp(3, "LPOP", lkey(i), "10")
        for (i = 0; i < NHASHES; i++)
            resp(3, "HDEL", hkey(i), "f0")
    }
}
