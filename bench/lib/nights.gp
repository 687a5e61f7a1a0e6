# Repository size per night, ferry vs restic (bench/nights.sh).
# gnuplot -e "datafile='plot.dat'; outfile='nights.png'; prunes='7 14 21 28'" nights.gp
# plot.dat columns: night, ferry MB, restic MB, pruned (1 on prune nights), date
set terminal pngcairo size 960,540 font "sans,11"
set output outfile
set title "Repository size per night: keep-daily 7, keep-weekly 4, prune on Sundays"
set xlabel "night"
set ylabel "repository size (MB, du -sb)"
set key top left
set grid ytics
set xrange [0.5:*]
set yrange [0:*]
do for [n in prunes] { set arrow from n+0, graph 0 to n+0, graph 1 nohead dt 2 lc rgb "#888888" }
set label "dashed: prune nights" at graph 0.99, graph 0.04 right textcolor rgb "#666666"
plot datafile using 1:3 with linespoints lw 2 pt 7 ps 0.6 lc rgb "#d95f02" title "restic 0.14 (forget + prune)", \
     datafile using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb "#1b9e77" title "ferry (forget + prune)"
