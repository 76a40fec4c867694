"""One item, three row numbers: its row in the catalogue (items.csv), in the champion's item list
and in the visual index. These arrays translate between them, once per state.

They also say what may be shown at all (``showable``): an item the current catalogue lists AND the
current index holds, i.e. one with a title and a usable image. The champion may know items that
left either (an image deleted since training, an item delisted), and the index may hold items the
catalogue no longer lists; every query path filters through these masks, so none can show them.
"""
import numpy as np

from .catalogue import ItemCatalogue
from .champion import Champion
from .similar import SimilarItems


class RowMaps:
    def __init__(self, catalogue: ItemCatalogue, champion: Champion | None, similar: SimilarItems | None):
        cat = catalogue
        self.index_to_cat = np.full(len(similar) if similar else 0, -1, dtype=np.intp)
        self.index_to_cat[cat.vec_row[cat.vec_row >= 0]] = np.flatnonzero(cat.vec_row >= 0)
        # index rows the catalogue lists; None when it lists them all (no filter needed)
        listed = self.index_to_cat >= 0
        self.listed_index_rows = None if listed.all() else np.flatnonzero(listed)
        # catalogue rows that may be shown: in the index (a usable image). Before any index has
        # loaded nothing says which images are usable, so the catalogue alone decides.
        self.showable = cat.vec_row >= 0 if similar is not None else np.ones(len(cat), dtype=bool)
        self.champ_to_cat = self.cat_to_champ = self.hidden_bias = None
        self.popularity = np.zeros(len(cat), dtype=np.float32)   # the champion's, per catalogue row
        if champion is not None:
            self.champ_to_cat = np.asarray([cat.row.get(i, -1) for i in champion.bundle.item_ids.tolist()],
                                           dtype=np.intp)
            self.cat_to_champ = np.full(len(cat), -1, dtype=np.intp)
            known = self.champ_to_cat >= 0
            self.cat_to_champ[self.champ_to_cat[known]] = np.flatnonzero(known)
            self.popularity[self.champ_to_cat[known]] = champion.popularity[known]
            # added to every score: items the champion knows that cannot be shown never are
            shown = known.copy()
            shown[known] = self.showable[self.champ_to_cat[known]]
            self.hidden_bias = np.where(shown, 0.0, -np.inf).astype(np.float32)
