"""The site's one stylesheet and one script, written beside the pages (no CDN, no fonts
from elsewhere: the site must open from a USB stick with no network)."""

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#20232a;color:#eee;padding:10px 18px}
header a{color:#9cf}
main{padding:12px 18px}
h1{font-size:20px;margin:4px 0}
h2{font-size:16px;margin:18px 0 6px}
.meta{color:#555}
header .meta{color:#bbb}
table.layers{border-collapse:collapse}
table.layers td,table.layers th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
.tiles{display:flex;flex-wrap:wrap;gap:6px}
.tile{display:block;width:108px;text-decoration:none;color:#222;background:#fff;border:1px solid #ddd;
 border-radius:4px;padding:4px;font-size:11px;overflow:hidden}
.tile img{width:100px;height:100px;display:block;background:#eee}
.tile span{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.pictures figure,.examples figure{display:inline-block;margin:0 8px 8px 0;font-size:12px;max-width:170px;
 vertical-align:top}
.pictures img,.examples img{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
figcaption{word-break:break-all}
.links li{margin:2px 0}
.controls{margin:8px 0}
.controls input{width:220px}
.missing{color:#a00}
"""

# Filter (text in the label or the channel number) and sort the tiles of a layer page. The
# tiles are plain HTML (the page is usable without it); this only reorders and hides them.
SCRIPT = """
document.addEventListener('DOMContentLoaded', function () {
  var box = document.getElementById('filter'), order = document.getElementById('order');
  var grid = document.getElementById('tiles');
  if (!box || !order || !grid) return;
  var tiles = Array.prototype.slice.call(grid.children);
  function apply() {
    var text = box.value.trim().toLowerCase(), key = order.value;
    tiles.forEach(function (t) {
      var hay = (t.dataset.label + ' ' + t.dataset.channel).toLowerCase();
      t.style.display = !text || hay.indexOf(text) >= 0 ? '' : 'none';
    });
    var sorted = tiles.slice().sort(function (a, b) {
      if (key === 'label') return a.dataset.label.localeCompare(b.dataset.label) || a.dataset.channel - b.dataset.channel;
      if (key === 'channel') return a.dataset.channel - b.dataset.channel;
      return parseFloat(b.dataset[key]) - parseFloat(a.dataset[key]) || a.dataset.channel - b.dataset.channel;
    });
    sorted.forEach(function (t) { grid.appendChild(t); });
  }
  box.addEventListener('input', apply);
  order.addEventListener('change', apply);
});
"""
