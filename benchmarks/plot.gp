# The summary plot: % of the FMA peak per layer for each pass (a linear axis: a log scale hides
# 30% differences), convgemm's packed driver beside its explicit OpenBLAS path, oneDNN (blocked
# and plain NCHW layouts) and the OpenBLAS SGEMM roofline, at the largest batch and thread count
# run.
# Usage: gnuplot -e "datafile='plot.dat'; outfile='summary.png'; subtitle='...'" plot.gp
# plot.dat (written by convgemm_bench --summary-dir) holds one block per pass; NaN = not run.
# Columns: layer, packed, explicit OpenBLAS, classic, naive, roofline, oneDNN nchw, oneDNN
# blocked, FMA peak (GFLOP/s).
if (!exists("datafile")) datafile = "plot.dat"
if (!exists("outfile")) outfile = "summary.png"
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 1600,1500 font "sans,10" noenhanced
set output outfile
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel "% of the FMA peak"
set grid ytics
set xtics rotate by -30 scale 0
set key above horizontal
set bmargin 6

passes = "forward backward_data backward_weights"
set multiplot layout 3,1 title "convgemm (packed driver and explicit path) vs oneDNN and the roofline   ".subtitle \
    ."\nFLOPs = 2*N*O*OH*OW*(C/G)*KH*KW per pass, padding taps included"
do for [i = 0:2] {
  set title word(passes, i + 1)
  if (i > 0) { unset key }
  plot datafile index i using (100*$2/$9):xtic(1) title "convgemm packed (BLIS kernel)" lc rgb "#1f77b4", \
       '' index i using (100*$3/$9) title "convgemm explicit (im2col + OpenBLAS)" lc rgb "#9467bd", \
       '' index i using (100*$8/$9) title "oneDNN blocked" lc rgb "#d62728", \
       '' index i using (100*$7/$9) title "oneDNN nchw" lc rgb "#ff7f0e", \
       '' index i using (100*$6/$9) title "OpenBLAS SGEMM roofline" lc rgb "#2ca02c"
}
unset multiplot
