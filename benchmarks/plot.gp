# A capacity sweep: p99 latency (top) and delivery ratio (bottom) against
# connections, one line per series (server command and codec). benchmarks/run
# calls it as
#   gnuplot -e "out='sweep.png'; heading='...'; n=2; f1='a.dat'; t1='flock'; f2='b.dat'; t2='node'" plot.gp
# Each .dat file holds "connections p99_ms delivery_ratio" rows.

set terminal pngcairo size 1000,800 font ",10"
set output out
set multiplot layout 2,1 title heading
set grid
set key top left
set xlabel "connections"
set xrange [0:*]

set ylabel "p99 latency (ms, log scale)"
set logscale y
plot for [i=1:n] value(sprintf("f%d", i)) using 1:2 with linespoints lw 2 pt 7 title value(sprintf("t%d", i)), \
     50 with lines dt 2 lc rgb "red" title "50 ms target"

unset logscale y
set ylabel "delivery ratio"
set key bottom left
set yrange [*:1.0005]
plot for [i=1:n] value(sprintf("f%d", i)) using 1:3 with linespoints lw 2 pt 7 title value(sprintf("t%d", i)), \
     0.999 with lines dt 2 lc rgb "red" title "0.999 target"

unset multiplot
